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
}
