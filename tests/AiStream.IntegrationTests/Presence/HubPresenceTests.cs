using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>The .NET SignalR client and an SSE watcher present in one session see each other.</summary>
public sealed class HubPresenceTests
{
    [Fact]
    public async Task HubAndSse_SameSession_SeeEachOthersJoinStateAndLeave()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(grace: 5), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");
        await using var bob = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u2", "Bob");

        // Bob joins second, from the start of the log, so he sees Ann's join as well as his own; Ann sees his live.
        var joined = await bob.Connection.InvokeAsync<JsonObject>("Join", session, 0L);
        var annOnHub = await bob.WaitForAsync(e => e.Is("presence.join", "u1"), "Ann's join on the hub");
        var bobOnSse = await ann.WaitForAsync(e => e.Is("presence.join", "u2"), "Bob's join at Ann");
        await bob.WaitForAsync(e => e.Is("presence.join", "u2"), "Bob's own join on the hub");

        Assert.False(joined["snapshot"]!.GetValue<bool>());
        Assert.Equal("Ann", Str(annOnHub.Value!["name"]));
        Assert.Equal("Bob", Str(bobOnSse.Value!["name"]));
        Assert.Equal("user", Str(bobOnSse.Value["kind"]));
        Assert.True(annOnHub.Seq < bobOnSse.Seq);
        var listed = await GetPresenceAsync(http, session);
        Assert.Equal(["u1", "u2"], Members(listed).Select(m => Str(m["id"])));
        Assert.All(Members(listed), m => Assert.Equal(1, m["connections"]!.GetValue<int>()));

        await bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["typing"] = true });
        var update = await ann.WaitForAsync(e => e.Is("presence.update", "u2"), "Bob's state at Ann");
        Assert.True(update.Value!["state"]!["typing"]!.GetValue<bool>());

        await bob.Connection.StopAsync();
        await WaitForConnectionsAsync(http, session, "u2", 0);
        await time.AdvanceAsync(TimeSpan.FromSeconds(4));
        var beforeGrace = await SyncAsync(http, session, ann);
        Assert.DoesNotContain(beforeGrace, e => e.Is("presence.leave", "u2"));
        await time.AdvanceAsync(TimeSpan.FromSeconds(1.5));
        var leave = await ann.WaitForAsync(e => e.Is("presence.leave", "u2"), "Bob's leave at Ann");

        Assert.Equal("left", Str(leave.Value!["reason"]));
        Assert.Equal(["presence.join", "presence.update", "presence.leave"], ann.PresenceEvents.Where(e => e.MemberId == "u2").Select(e => e.Name));
        Assert.Equal(["u1"], Members(await GetPresenceAsync(http, session)).Select(m => Str(m["id"])));
    }

    [Fact]
    public async Task HubLeave_ThenJoinAgainInsideTheGrace_NoLeaveJoinPair()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(grace: 5), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");
        await using var bob = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u2", "Bob");
        await bob.Connection.InvokeAsync<JsonObject>("Join", session, null);

        await bob.Connection.InvokeAsync("Leave", session);
        await WaitForConnectionsAsync(http, session, "u2", 0);
        await time.AdvanceAsync(TimeSpan.FromSeconds(2));
        await bob.Connection.InvokeAsync<JsonObject>("Join", session, null);
        await time.AdvanceAsync(TimeSpan.FromSeconds(10));
        var seen = await SyncAsync(http, session, ann);

        Assert.Equal(["presence.join"], seen.Where(e => e.MemberId == "u2").Select(e => e.Name));
        Assert.Equal(1, await ConnectionsAsync(http, session, "u2"));
    }
}
