using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Infrastructure.Tokens;
using static AiStream.IntegrationTests.Scaleout.ScaleoutKit;

namespace AiStream.IntegrationTests.Limits;

/// <summary>With Redis, runs per minute and daily token budgets are counted once for all nodes.</summary>
public sealed class RedisLimitsTests
{
    [Fact]
    public async Task RunsPerMinuteAndDailyTokens_HoldAcrossTwoNodes()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = AuthOn(Merge(Sim(tokensPerSecond: 0)));
        settings["AiStream:Limits:RunsPerMinute"] = "2";
        var nodes = await StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        var token = Mint("alice", Grants(("*", ["write"])), "completions");
        using var onA = a.Client().WithBearer(token);
        using var onB = b.Client().WithBearer(token);
        var session = NewSessionId();

        await StartRunAsync(onA, session);
        await StartRunAsync(onB, session);
        using var third = await onA.PostAsJsonAsync($"api/sessions/{session}/runs", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        // Two runs this minute, one on each node: the third is refused on either (unless the minute just turned).
        Assert.True(third.StatusCode == HttpStatusCode.TooManyRequests || DateTime.UtcNow.Second < 2, $"third run answered {(int)third.StatusCode}");
    }

    [Fact]
    public async Task ADailyTokenBudget_SpentOnOneNode_IsSpentOnTheOther()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = AuthOn(Merge(Sim(tokensPerSecond: 0)));
        settings["AiStream:Limits:DailyTokens"] = "1000";
        var nodes = await StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        var token = Mint("alice", Grants(("*", ["read"])), "completions");
        using var onA = a.Client().WithBearer(token);
        using var onB = b.Client().WithBearer(token);
        static JsonObject Completion(int max) => new()
        {
            ["model"] = "sim",
            ["max_tokens"] = max,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        };

        // Node A admits a request that reserves nearly the whole budget; it settles to what the answer really used.
        using (var first = await onA.PostAsJsonAsync("v1/chat/completions", Completion(990)))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        // Node B sees the settlement (before it, the reservation left no room for 100 more)...
        await WaitUntilAsync(async () =>
        {
            using var probe = await onB.PostAsJsonAsync("v1/chat/completions", Completion(100));
            return probe.StatusCode == HttpStatusCode.OK;
        }, "node B to see node A's settled usage");

        // ...and what both spent: another near-whole-budget request no longer fits, on either node.
        using var refused = await onB.PostAsJsonAsync("v1/chat/completions", Completion(990));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
    }

    [Fact]
    public async Task ConnectionsPerUser_HeldOnOneNode_AreCountedOnTheOther_AndANodesDeathFreesItsSlots()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = AuthOn(Merge(Sim(tokensPerSecond: 0)));
        settings["AiStream:Limits:ConnectionsPerUser"] = "2";
        var nodes = await StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        var token = Mint("alice", Grants(("*", ["read"])));
        using var onA = a.Client().WithBearer(token);
        using var onB = b.Client().WithBearer(token);
        using var bobOnB = b.Client().WithBearer(Mint("bob", Grants(("*", ["read"]))));
        var session = NewSessionId();

        // Alice holds one watch on each node: a third, on either node, is refused.
        var first = await SessionWatcher.OpenAsync(onA, session);
        var second = await SessionWatcher.OpenAsync(onB, session);
        foreach (var node in new[] { onA, onB })
        {
            using var third = await node.GetAsync($"api/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
            Assert.Contains("too_many_connections", await third.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // Bob is not Alice.
        using (var bob = await SessionWatcher.OpenAsync(bobOnB, session))
        {
        }

        // Closing the watch on B frees its slot for a watch on A.
        second.Dispose();
        await WaitUntilAsync(async () =>
        {
            return await WatchStatusAsync(onA, session) == HttpStatusCode.OK;
        }, "the slot given back on B to be free on A");

        // A node that dies gives nothing back: its slots lapse once it stops renewing them (2 x NodeTimeoutSeconds).
        first.Dispose();
        await using var c = await StartNodeAsync(redis.ConnectionString, "C", settings);
        using var onC = c.Client().WithBearer(token);
        // A closed watch's slot is given back once its node sees the close: open until admitted.
        using var held1 = await HoldWatchAsync(onC, session);
        using var held2 = await HoldWatchAsync(onC, session);
        Assert.Equal(HttpStatusCode.TooManyRequests, await WatchStatusAsync(onB, session));

        c.Kill();
        var killedAt = DateTime.UtcNow;
        await WaitUntilAsync(async () =>
        {
            return await WatchStatusAsync(onB, session) == HttpStatusCode.OK;
        }, "the dead node's slots to lapse", TimeSpan.FromSeconds(20));
        Assert.True(DateTime.UtcNow - killedAt < TimeSpan.FromSeconds(2 * NodeTimeoutSeconds + 5), "slots lapsed late");
    }

    [Fact]
    public async Task ConnectionsPerUser_WithRedisStopped_AreStillLimitedOnTheNode_AndWrittenBackOnceRedisIsBack()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = AuthOn(Merge(Sim(tokensPerSecond: 0)));
        settings["AiStream:Limits:ConnectionsPerUser"] = "1";
        settings["AiStream:Scaleout:TimeoutMilliseconds"] = "500";
        var nodes = await StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        var token = Mint("alice", Grants(("*", ["read"])));
        using var onA = a.Client().WithBearer(token);
        using var onB = b.Client().WithBearer(token);
        var session = NewSessionId();

        // Node A mirrors the session while a watch is open on it; the watch closes while Redis is away.
        var opened = await SessionWatcher.OpenAsync(onA, session);
        await redis.StopAsync();
        opened.Dispose();

        // Node A now counts Alice's slots itself: one watch is admitted (served from its mirror), a second is refused.
        using var held = await HoldWatchAsync(onA, session);
        Assert.Equal(HttpStatusCode.TooManyRequests, await WatchStatusAsync(onA, session));

        // Once Redis is back (empty), node A writes its slot again, and node B counts it.
        await redis.StartAgainAsync();
        await WaitUntilAsync(async () =>
        {
            return await WatchStatusAsync(onB, session) == HttpStatusCode.TooManyRequests;
        }, "node B to count node A's slot written back", TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task ConnectionsPerUser_HeldWhileRedisRestartsEmpty_AreWrittenBackAndStillCount()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = AuthOn(Merge(Sim(tokensPerSecond: 0)));
        settings["AiStream:Limits:ConnectionsPerUser"] = "1";
        var nodes = await StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        var token = Mint("alice", Grants(("*", ["read"])));
        using var onA = a.Client().WithBearer(token);
        using var onB = b.Client().WithBearer(token);
        var session = NewSessionId();
        using var held = await SessionWatcher.OpenAsync(onA, session);

        // Redis loses everything while nobody connects: node A's renewal writes the slot of its open watch again.
        await redis.RestartAsync(TimeSpan.FromMilliseconds(300));
        await Task.Delay(TimeSpan.FromSeconds(NodeTimeoutSeconds * 2));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, await WatchStatusAsync(onB, session));
            await Task.Delay(TimeSpan.FromSeconds(NodeTimeoutSeconds / 2));
        }
    }

    /// <summary>Opens a watch of <paramref name="session"/> and closes it again; the status it was answered with.</summary>
    private static async Task<HttpStatusCode> WatchStatusAsync(HttpClient http, string session)
    {
        using var response = await http.GetAsync($"api/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead);
        return response.StatusCode;
    }

    /// <summary>Opens a watch, retrying while it is refused for a slot not yet given back; the response holds it open.</summary>
    private static async Task<HttpResponseMessage> HoldWatchAsync(HttpClient http, string session)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var response = await http.GetAsync($"api/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                return response;
            }

            response.Dispose();
            Assert.True(DateTime.UtcNow < deadline, "a watch was never admitted");
            await Task.Delay(50);
        }
    }
}
