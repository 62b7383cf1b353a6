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
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Limits;

/// <summary>Each limit reached and reported: 429 problem with Retry-After over HTTP, a HubException with the reason over the hub.</summary>
public sealed class LimitsTests
{
    private static JsonObject AllSessions => Grants(("*", ["read", "write"]));

    private static async Task AssertTooManyAsync(HttpResponseMessage response, string code)
    {
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.True(response.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), "Retry-After is missing");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(code, JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task ConnectionsPerUser_ASecondWatchOfTheSameUserIs429_UntilTheFirstCloses()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()).With("AiStream:Limits:ConnectionsPerUser", 1));
        using var alice = gateway.Client().WithBearer(Mint("alice", AllSessions));
        using var aliceAgain = gateway.Client().WithBearer(Mint("alice", AllSessions));
        using var bob = gateway.Client().WithBearer(Mint("bob", AllSessions));
        var session = NewSessionId();

        var first = await SessionWatcher.OpenAsync(alice, session);
        using (var second = await aliceAgain.GetAsync($"api/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead))
        {
            await AssertTooManyAsync(second, "too_many_connections");
        }

        // Another user is not affected, and short requests are not connections.
        using (var other = await SessionWatcher.OpenAsync(bob, session))
        {
            using var info = await aliceAgain.GetAsync($"api/sessions/{session}");
            Assert.Equal(HttpStatusCode.OK, info.StatusCode);
        }

        first.Dispose();
        await WaitUntilAsync(async () =>
        {
            using var retry = await aliceAgain.GetAsync($"api/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead);
            return retry.StatusCode == HttpStatusCode.OK;
        }, "the connection to be free again");
    }

    [Fact]
    public async Task ConnectionsPerIp_CountsHubConnectionsAndWatchesFromOneAddress()
    {
        await using var gateway = new GatewayFactory(Sim().With("AiStream:Limits:ConnectionsPerIp", 1));
        using var http = gateway.Client();
        using var watch = await SessionWatcher.OpenAsync(http, NewSessionId());
        await using var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o =>
            {
                o.Transports = HttpTransportType.WebSockets;
                o.SkipNegotiation = true;
            })
            .Build();
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => hub.StartAsync());
        Assert.Contains("429", failure.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MessagesPerSecond_LimitsHttpPublishesPerCaller_AndHubCallsPerConnection()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()).With("AiStream:Limits:MessagesPerSecond", 2));
        using var http = gateway.Client().WithBearer(Mint("alice", AllSessions));
        var session = NewSessionId();
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? refused = null;
        for (var i = 0; i < 10; i++)
        {
            var response = await http.PostAsJsonAsync($"api/sessions/{session}/events", Custom("burst", i));
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                refused ??= response;
            }
            else
            {
                response.Dispose();
            }
        }

        // A burst of twice the rate passes; the rest is refused.
        Assert.InRange(statuses.Count(s => s == HttpStatusCode.Created), 4, 6);
        await AssertTooManyAsync(refused!, "too_many_messages");
        refused!.Dispose();

        await using var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o => o.AccessTokenProvider = () => Task.FromResult<string?>(Mint("bob", AllSessions)))
            .Build();
        await hub.StartAsync();
        var errors = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            try
            {
                await hub.InvokeAsync<long>("Publish", session, JsonSerializer.SerializeToElement(Custom("hub", i)));
            }
            catch (HubException e)
            {
                errors.Add(e.Message);
            }
        }

        Assert.InRange(errors.Count, 4, 6);
        Assert.All(errors, e => Assert.Contains("Too many messages on this connection", e, StringComparison.Ordinal));
        Assert.Equal(HubConnectionState.Connected, hub.State);
    }

    [Fact]
    public async Task RunsPerMinute_IsOneBudgetAcrossRestHubAndAgUi()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()).With("AiStream:Limits:RunsPerMinute", 2));
        var token = Mint("alice", AllSessions);
        using var http = gateway.Client().WithBearer(token);
        var session = NewSessionId();
        await StartRunAsync(http, session);
        await using var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o => o.AccessTokenProvider = () => Task.FromResult<string?>(token))
            .Build();
        await hub.StartAsync();
        await hub.InvokeAsync<string>("StartRun", session, JsonSerializer.SerializeToElement(new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) }));

        using (var third = await http.PostAsJsonAsync($"api/sessions/{session}/runs", new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) }))
        {
            await AssertTooManyAsync(third, "too_many_runs");
        }

        using (var agui = await http.PostAsJsonAsync("agui", new JsonObject { ["threadId"] = session, ["messages"] = new JsonArray() }))
        {
            await AssertTooManyAsync(agui, "too_many_runs");
        }

        var overHub = await Assert.ThrowsAsync<HubException>(() => hub.InvokeAsync<string>("StartRun", session, JsonSerializer.SerializeToElement(new JsonObject { ["messages"] = new JsonArray() })));
        Assert.Contains("RunsPerMinute", overHub.Message, StringComparison.Ordinal);

        // Another user has a budget of their own.
        using var bob = gateway.Client().WithBearer(Mint("bob", AllSessions));
        await StartRunAsync(bob, session);
    }

    [Fact]
    public async Task MaxRunsPerSession_RefusesAnotherRunWhileTheSessionHasThatMany()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 5).With("AiStream:Sessions:MaxRunsPerSession", 2));
        using var http = gateway.Client();
        var session = NewSessionId();
        await StartRunAsync(http, session, "one long answer");
        await StartRunAsync(http, session, "another long answer");
        using var third = await http.PostAsJsonAsync($"api/sessions/{session}/runs", new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) });
        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        Assert.Equal("too_many_runs_in_session", JsonNode.Parse(await third.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());

        // Another session is not affected.
        await StartRunAsync(http, NewSessionId());
    }

    [Fact]
    public async Task ARunRefusedBecauseTheNodeIsFull_HoldsNoRunSlot_OnceThereIsRoomItStarts()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = Sim().With("AiStream:Sessions:MaxSessions", 1).With("AiStream:Sessions:MaxRunsPerSession", 1);
        await using var gateway = new GatewayFactory(settings, time);
        using var http = gateway.Client();
        await PublishAsync(http, NewSessionId(), Custom("x", 1));
        var session = NewSessionId();

        using (var refused = await http.PostAsJsonAsync($"api/sessions/{session}/runs", new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) }))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.Equal("too_many_sessions", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        }

        // The first session is forgotten once idle; the refused run left nothing behind, so the session's one run slot is free.
        time.Advance(TimeSpan.FromMinutes(62));
        await WaitUntilAsync(async () =>
        {
            using var retry = await http.PostAsJsonAsync($"api/sessions/{session}/runs", new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) });
            Assert.NotEqual(HttpStatusCode.TooManyRequests, retry.StatusCode);
            return retry.StatusCode == HttpStatusCode.Accepted;
        }, "the run to start once the node has room");
    }
}
