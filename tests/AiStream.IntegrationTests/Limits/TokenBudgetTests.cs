using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Sessions;
using static AiStream.IntegrationTests.Infrastructure.Tokens;

namespace AiStream.IntegrationTests.Limits;

/// <summary>
/// Daily token budgets refuse the request that would cross them before the upstream is called (the fake upstream
/// counts what reaches it), and reservations settle to the real usage so the budget is not eaten by max_tokens.
/// </summary>
public sealed class TokenBudgetTests
{
    private static JsonObject Completion(int maxTokens) => new()
    {
        ["model"] = "gpt-test",
        ["max_tokens"] = maxTokens,
        ["stream"] = true,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
    };

    [Fact]
    public async Task TheCompletionThatWouldCrossTheBudget_IsRefusedBeforeTheUpstreamSeesIt_AndUsageSettlesReservations()
    {
        // Each answer uses 36 tokens (the recording's usage); max_tokens is what admission reserves.
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        var settings = AuthOn(Settings.Compatible(upstream.BaseUrl)).With("AiStream:Limits:DailyTokens", 1000);
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Http().WithBearer(Mint("alice", Grants(("*", ["read"])), "completions"));

        // 600 reserved, 36 used: the second fits only because the first settled.
        foreach (var _ in new[] { 1, 2 })
        {
            using var ok = await http.PostAsJsonAsync("v1/chat/completions", Completion(600));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            await ok.Content.ReadAsStringAsync();
        }

        using var refused = await http.PostAsJsonAsync("v1/chat/completions", Completion(950));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.True(refused.Headers.RetryAfter?.Delta > TimeSpan.Zero);
        Assert.Equal("daily_token_budget_exceeded", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        Assert.Equal(2, upstream.RequestCount);

        // Another user has a budget of their own; a small request of this one still fits.
        using var bob = gateway.Http().WithBearer(Mint("bob", Grants(("*", ["read"])), "completions"));
        using (var other = await bob.PostAsJsonAsync("v1/chat/completions", Completion(950)))
        {
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
        }

        using (var small = await http.PostAsJsonAsync("v1/chat/completions", Completion(100)))
        {
            Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        }

        Assert.Equal(4, upstream.RequestCount);
    }

    [Fact]
    public async Task AnApiKeysOwnBudget_OverridesTheDefault_ForRunsToo()
    {
        const string Key = "job_0123456789abcdef0123456789abcdef";
        var settings = SessionApi.Sim()
            .With("AiStream:Limits:DailyTokens", 1_000_000)
            .With("AiStream:Auth:ApiKeys:job:Hash", Hash(Key))
            .With("AiStream:Auth:ApiKeys:job:Scopes:0", "write")
            .With("AiStream:Auth:ApiKeys:job:DailyTokens", 100);
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Client();
        http.DefaultRequestHeaders.Add("X-Api-Key", Key);
        // A run reserves its prompt plus DefaultMaxTokens (1024): more than this key's 100 a day.
        using var run = await http.PostAsJsonAsync($"api/sessions/{SessionApi.NewSessionId()}/runs", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        Assert.Equal(HttpStatusCode.TooManyRequests, run.StatusCode);
        Assert.True(run.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After is missing");
        Assert.Equal("daily_token_budget_exceeded", JsonNode.Parse(await run.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
    }
}
