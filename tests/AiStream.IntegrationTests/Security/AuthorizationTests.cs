using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Sessions;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Infrastructure.Tokens;
using static AiStream.IntegrationTests.Security.AuthenticationTests;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Security;

/// <summary>
/// Per-session rights, and the bug to hunt: nothing of a session reaches a caller without <c>read</c> on it, over any
/// transport; nothing is changed in it without <c>write</c>; runs are cancelled by their starter or an admin only.
/// </summary>
public sealed class AuthorizationTests
{
    private static readonly string AliceToken = Mint("alice", Grants(("a-*", ["read", "write"])));
    private static readonly string BobToken = Mint("bob", Grants(("b-*", ["read", "write"])));
    private static readonly string CarolToken = Mint("carol", Grants(("a-*", ["read"])));
    private static readonly string DaveToken = Mint("dave", Grants(("a-*", ["admin"])));

    private static async Task<HubConnection> HubAsync(Uri baseAddress, string token, List<(string Session, string Json)>? received = null)
    {
        var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(baseAddress, "hubs/sessions"), o =>
            {
                o.Transports = HttpTransportType.WebSockets;
                o.AccessTokenProvider = () => Task.FromResult<string?>(token);
            })
            .Build();
        if (received is not null)
        {
            hub.On<string, JsonElement>("Event", (session, e) =>
            {
                lock (received)
                {
                    received.Add((session, e.GetRawText()));
                }
            });
        }

        await hub.StartAsync();
        return hub;
    }

    [Fact]
    public async Task TwoUsersTwoSessions_NothingCrosses_OnAnyTransport()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(tokensPerSecond: 200)));
        using var alice = gateway.Client().WithBearer(AliceToken);
        using var bob = gateway.Client().WithBearer(BobToken);
        var a = "a-" + Guid.NewGuid().ToString("N")[..8];
        var b = "b-" + Guid.NewGuid().ToString("N")[..8];

        // Bob watches his session over SSE and the hub; Alice hers.
        using var bobWatch = await SessionWatcher.OpenAsync(bob, b);
        var bobHubEvents = new List<(string Session, string Json)>();
        await using var bobHub = await HubAsync(bob.BaseAddress!, BobToken, bobHubEvents);
        await bobHub.InvokeAsync<JsonObject>("Join", b, (long?)null);
        using var aliceWatch = await SessionWatcher.OpenAsync(alice, a);
        await PublishAsync(alice, a, Custom("secret.a", "alice's"));
        var aliceRun = await StartRunAsync(alice, a, "alice's question");

        // Everything Alice might try on Bob's session is refused with 403, before any data.
        foreach (var request in new[]
        {
            Get($"api/sessions/{b}/events", "text/event-stream"),
            Get($"api/sessions/{b}"),
            Get($"api/sessions/{b}/presence"),
            Post($"api/sessions/{b}/events", Custom("intruder", 1)),
            Post($"api/sessions/{b}/runs", new JsonObject { ["messages"] = new JsonArray() }),
            Post($"api/sessions/{b}/presence/state", new JsonObject { ["typing"] = true }),
            Post("agui", new JsonObject { ["threadId"] = b, ["messages"] = new JsonArray() }),
            Post("api/chat", new JsonObject { ["id"] = b, ["messages"] = new JsonArray() }),
            Get($"api/chat/{b}/stream", "text/event-stream"),
            Post($"api/chat/{b}/stop", new JsonObject()),
        })
        {
            using var response = await alice.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.True(response.StatusCode == HttpStatusCode.Forbidden, $"{request.Method} {request.RequestUri} answered {(int)response.StatusCode}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.DoesNotContain(b, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // A run id of one session never reaches a run of another: Bob cannot cancel Alice's run through his session.
        using (var cancel = await bob.PostAsync($"api/sessions/{b}/runs/{aliceRun}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.NotFound, cancel.StatusCode);
        }

        using (var cancel = await bob.PostAsync($"api/sessions/{a}/runs/{aliceRun}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Forbidden, cancel.StatusCode);
        }

        // Over the hub: every method on Alice's session is refused for Bob.
        await Assert.ThrowsAsync<HubException>(() => bobHub.InvokeAsync<JsonObject>("Join", a, (long?)null));
        await Assert.ThrowsAsync<HubException>(() => bobHub.InvokeAsync("SetState", a, JsonSerializer.SerializeToElement(new { typing = true })));
        await Assert.ThrowsAsync<HubException>(() => bobHub.InvokeAsync<long>("Publish", a, JsonSerializer.SerializeToElement(Custom("intruder", 1))));
        await Assert.ThrowsAsync<HubException>(() => bobHub.InvokeAsync<string>("StartRun", a, JsonSerializer.SerializeToElement(new JsonObject { ["messages"] = new JsonArray() })));
        await Assert.ThrowsAsync<HubException>(() => bobHub.InvokeAsync<string>("CancelRun", a, aliceRun));

        // Alice's run finishes in her session; Bob's watchers saw only his own session, presence included.
        await aliceWatch.ReadUntilTypeAsync("RUN_FINISHED");
        await PublishAsync(bob, b, Custom("marker.b", 1));
        var bobSeen = await bobWatch.ReadUntilAsync(e => e.Str("name") == "marker.b");
        Assert.All(bobWatch.Events, e => Assert.DoesNotContain("alice", e.Json, StringComparison.Ordinal));
        Assert.DoesNotContain(bobSeen, e => e.Json.Contains("secret.a", StringComparison.Ordinal) || e.Type.StartsWith("RUN_", StringComparison.Ordinal));
        await WaitUntilAsync(() => Task.FromResult(bobHubEvents.ToList().Any(e => e.Json.Contains("marker.b", StringComparison.Ordinal))), "the hub to see Bob's marker");
        lock (bobHubEvents)
        {
            Assert.All(bobHubEvents, e => Assert.Equal(b, e.Session));
            Assert.All(bobHubEvents, e => Assert.DoesNotContain("alice", e.Json, StringComparison.Ordinal));
        }

        // Alice's presence list shows only Alice; Bob is nowhere in her session.
        var presence = JsonNode.Parse(await alice.GetStringAsync($"api/sessions/{a}/presence"))!;
        Assert.Equal(["alice"], presence["members"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()).Where(id => !id.StartsWith("agent:", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task ReadOnlyCaller_Watches_ButCannotPublishOrRunOrCancel()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(tokensPerSecond: 20)));
        using var carol = gateway.Client().WithBearer(CarolToken);
        using var alice = gateway.Client().WithBearer(AliceToken);
        var a = "a-" + Guid.NewGuid().ToString("N")[..8];

        using var watch = await SessionWatcher.OpenAsync(carol, a);
        using (var info = await carol.GetAsync($"api/sessions/{a}"))
        {
            Assert.Equal(HttpStatusCode.OK, info.StatusCode);
        }

        using (var state = await carol.PostAsJsonAsync($"api/sessions/{a}/presence/state", new JsonObject { ["viewing"] = "doc" }))
        {
            Assert.Equal(HttpStatusCode.NoContent, state.StatusCode);
        }

        using (var publish = await carol.PostAsJsonAsync($"api/sessions/{a}/events", Custom("x", 1)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, publish.StatusCode);
        }

        using (var run = await carol.PostAsJsonAsync($"api/sessions/{a}/runs", new JsonObject { ["messages"] = new JsonArray() }))
        {
            Assert.Equal(HttpStatusCode.Forbidden, run.StatusCode);
        }

        using (var agui = await carol.PostAsJsonAsync("agui", new JsonObject { ["threadId"] = a, ["messages"] = new JsonArray() }))
        {
            Assert.Equal(HttpStatusCode.Forbidden, agui.StatusCode);
        }

        var runId = await StartRunAsync(alice, a, "a long answer please");
        using (var cancel = await carol.PostAsync($"api/sessions/{a}/runs/{runId}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Forbidden, cancel.StatusCode);
        }

        Assert.Contains(runId, ActiveRuns(await InfoAsync(alice, a)));
    }

    [Fact]
    public async Task Cancel_ByAnotherWriterIsRefused_ByTheStarterOrAnAdminWorks()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(tokensPerSecond: 5)));
        using var alice = gateway.Client().WithBearer(AliceToken);
        using var erin = gateway.Client().WithBearer(Mint("erin", Grants(("a-*", ["write"]))));
        using var dave = gateway.Client().WithBearer(DaveToken);
        var a = "a-" + Guid.NewGuid().ToString("N")[..8];

        var first = await StartRunAsync(alice, a, "first");
        using (var byErin = await erin.PostAsync($"api/sessions/{a}/runs/{first}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Forbidden, byErin.StatusCode);
            Assert.Equal("not_run_owner", JsonNode.Parse(await byErin.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        }

        using (var byAlice = await alice.PostAsync($"api/sessions/{a}/runs/{first}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, byAlice.StatusCode);
        }

        var second = await StartRunAsync(alice, a, "second");
        using (var byDave = await dave.PostAsync($"api/sessions/{a}/runs/{second}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, byDave.StatusCode);
        }

        // Snapshots replace the conversation for everyone: a writer may not, an admin may.
        var snapshot = new JsonObject { ["type"] = "MESSAGES_SNAPSHOT", ["messages"] = new JsonArray() };
        using (var byAliceSnapshot = await alice.PostAsJsonAsync($"api/sessions/{a}/events", snapshot))
        {
            Assert.Equal(HttpStatusCode.Forbidden, byAliceSnapshot.StatusCode);
        }

        using (var byDaveSnapshot = await dave.PostAsJsonAsync($"api/sessions/{a}/events", snapshot))
        {
            Assert.Equal(HttpStatusCode.Created, byDaveSnapshot.StatusCode);
        }
    }

    [Fact]
    public async Task PresenceState_IsAlwaysTheCallersOwn()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()));
        using var alice = gateway.Client().WithBearer(AliceToken);
        using var carol = gateway.Client().WithBearer(CarolToken);
        var a = "a-" + Guid.NewGuid().ToString("N")[..8];
        using var aliceWatch = await SessionWatcher.OpenAsync(alice, a);
        using var carolWatch = await SessionWatcher.OpenAsync(carol, a);

        // Carol names Alice: the state still lands on Carol.
        using (var state = await carol.PostAsJsonAsync($"api/sessions/{a}/presence/state?clientId=alice", new JsonObject { ["typing"] = true }))
        {
            Assert.Equal(HttpStatusCode.NoContent, state.StatusCode);
        }

        await WaitUntilAsync(async () =>
        {
            var members = JsonNode.Parse(await alice.GetStringAsync($"api/sessions/{a}/presence"))!["members"]!.AsArray();
            return members.Any(m => m!["id"]!.GetValue<string>() == "carol" && m["state"]?["typing"]?.GetValue<bool>() == true);
        }, "carol's state to show");
        var list = JsonNode.Parse(await alice.GetStringAsync($"api/sessions/{a}/presence"))!["members"]!.AsArray();
        Assert.Null(list.Single(m => m!["id"]!.GetValue<string>() == "alice")!["state"]?["typing"]);
    }
}
