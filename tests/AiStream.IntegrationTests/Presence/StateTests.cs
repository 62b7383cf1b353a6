using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>Member state: hub SetState and POST presence/state, ordering, coalescing and limits.</summary>
public sealed class StateTests
{
    [Fact]
    public async Task SetState_HubAndPostInTurn_OtherMembersSeeEveryUpdateInOrder()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(coalesceMs: 250), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");
        await using var bob = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u2", "Bob");
        await bob.Connection.InvokeAsync<JsonObject>("Join", session, null);

        // Each update comes a coalescing window after the same member's previous one: none is merged.
        await bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["step"] = 1 });
        await time.AdvanceAsync(TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(100));
        await SetStateAsync(http, session, "u1", new JsonObject { ["step"] = 2 });
        await time.AdvanceAsync(TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(100));
        await bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["step"] = 3, ["typing"] = true });
        await time.AdvanceAsync(TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(100));
        await SetStateAsync(http, session, "u1", new JsonObject { ["step"] = 4, ["viewing"] = "msg-12" });
        var seen = await SyncAsync(http, session, observer);

        var updates = seen.Where(e => e.Name == "presence.update").ToList();
        Assert.Equal(["u2:1", "u1:2", "u2:3", "u1:4"], updates.Select(e => $"{e.MemberId}:{e.Value!["state"]!["step"]}"));
        Assert.True(updates.Zip(updates.Skip(1)).All(p => p.First.Seq < p.Second.Seq));
        Assert.Equal("Bob", Str(updates[0].Value!["name"]));
        Assert.Equal(1, updates[0].Value!["connections"]!.GetValue<int>());
        Assert.True(updates[2].Value!["state"]!["typing"]!.GetValue<bool>());
        Assert.Equal("msg-12", Str(updates[3].Value!["state"]!["viewing"]));
        // The other members got them too, in the same order: Ann over SSE, Bob over the hub.
        await ann.WaitForAsync(e => e.Is("presence.update", "u1") && e.Value!["state"]!["step"]!.GetValue<int>() == 4, "Ann's last update at Ann");
        Assert.Equal(updates.Select(e => e.Json), ann.PresenceEvents.Where(e => e.Name == "presence.update").Select(e => e.Json));
        await bob.WaitForAsync(e => e.Is("presence.update", "u1") && e.Value!["state"]!["step"]!.GetValue<int>() == 4, "Ann's last update on the hub");
        Assert.Equal(updates.Select(e => e.Json), bob.Received.Where(e => e.Name == "presence.update").Select(e => e.Json));
        var listed = await GetPresenceAsync(http, session);
        Assert.Equal("msg-12", Str(Member(listed, "u1")!["state"]!["viewing"]));
        Assert.True(Member(listed, "u2")!["state"]!["typing"]!.GetValue<bool>());
    }

    [Fact]
    public async Task SetState_BurstOfTwentyPosts_CoalescedIntoFewUpdatesEndingWithTheLatest()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(coalesceMs: 250), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");

        for (var i = 1; i <= 20; i++)
        {
            await SetStateAsync(http, session, "u1", new JsonObject { ["typing"] = true, ["n"] = i });
        }

        await time.AdvanceAsync(TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(50));
        var seen = await SyncAsync(http, session, observer);

        var updates = seen.Where(e => e.Is("presence.update", "u1")).ToList();
        // The first of a burst at once, the latest when the window closes.
        Assert.Equal([1, 20], updates.Select(e => e.Value!["state"]!["n"]!.GetValue<int>()));
        Assert.Equal(20, Member(await GetPresenceAsync(http, session), "u1")!["state"]!["n"]!.GetValue<int>());
    }

    [Fact]
    public async Task SetState_BurstOfTwentyOnTheHubOverTime_AtMostOneUpdatePerWindow()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(coalesceMs: 250), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        await using var bob = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u2", "Bob");
        await bob.Connection.InvokeAsync<JsonObject>("Join", session, null);

        // Twenty keystrokes 20 ms apart: 400 ms of typing.
        for (var i = 1; i <= 20; i++)
        {
            await bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["n"] = i });
            await time.AdvanceAsync(TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(20));
        }

        await time.AdvanceAsync(TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(50));
        var seen = await SyncAsync(http, session, observer);

        var updates = seen.Where(e => e.Is("presence.update", "u2")).Select(e => e.Value!["state"]!["n"]!.GetValue<int>()).ToList();
        Assert.InRange(updates.Count, 2, 3);
        Assert.Equal(1, updates[0]);
        Assert.Equal(20, updates[^1]);
        Assert.Equal(updates.Order(), updates);
    }

    [Fact]
    public async Task PostState_LargerThanMaxStateBytes_Returns400StateTooLarge()
    {
        await using var gateway = new GatewayFactory(Settings(maxStateBytes: 1024));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");

        using var response = await PostStateAsync(http, session, "u1", new JsonObject { ["draft"] = new string('x', 1100) });
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("state_too_large", Str(problem!["error"]!["code"]));
        Assert.Equal(400, problem["status"]!.GetValue<int>());
        Assert.Empty(Member(await GetPresenceAsync(http, session), "u1")!["state"]!.AsObject());
        // Just under the limit is fine.
        await SetStateAsync(http, session, "u1", new JsonObject { ["draft"] = new string('x', 1000) });
    }

    [Fact]
    public async Task HubSetState_TooLargeOrNotJoined_ThrowsHubException()
    {
        await using var gateway = new GatewayFactory(Settings(maxStateBytes: 64));
        using var http = gateway.Client();
        var session = NewSessionId();
        await using var bob = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u2", "Bob");

        var notJoined = await Assert.ThrowsAsync<HubException>(() => bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["typing"] = true }));
        await bob.Connection.InvokeAsync<JsonObject>("Join", session, null);
        var tooLarge = await Assert.ThrowsAsync<HubException>(() => bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["draft"] = new string('x', 100) }));
        var notObject = await Assert.ThrowsAsync<HubException>(() => bob.Connection.InvokeAsync("SetState", session, new JsonArray(1, 2)));

        Assert.Contains("Join the session", notJoined.Message, StringComparison.Ordinal);
        Assert.Contains("too large", tooLarge.Message, StringComparison.Ordinal);
        Assert.Contains("must be an object", notObject.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostState_ClientNotPresent_Returns404NotPresent()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");

        using var stranger = await PostStateAsync(http, session, "nobody", new JsonObject { ["typing"] = true });
        using var otherSession = await PostStateAsync(http, NewSessionId(), "u1", new JsonObject { ["typing"] = true });
        var problem = await stranger.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(404, (int)stranger.StatusCode);
        Assert.Equal("application/problem+json", stranger.Content.Headers.ContentType!.MediaType);
        Assert.Equal("not_present", Str(problem!["error"]!["code"]));
        Assert.Equal(404, (int)otherSession.StatusCode);
    }

    [Fact]
    public async Task PostState_BadClientIdOrBody_Returns400()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");

        using var noClient = await http.PostAsync($"api/sessions/{session}/presence/state", JsonContent.Create(new JsonObject()));
        using var badClient = await PostStateAsync(http, session, "a b", new JsonObject());
        using var notObject = await PostStateAsync(http, session, "u1", new JsonArray(1, 2));

        Assert.Equal(400, (int)noClient.StatusCode);
        Assert.Equal(400, (int)badClient.StatusCode);
        Assert.Equal(400, (int)notObject.StatusCode);
        Assert.Equal("clientId", Str((await noClient.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["param"]));
    }
}
