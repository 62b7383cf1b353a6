using System.Diagnostics.Metrics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Providers;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>Runs on a real (fake) provider: cancelling stops the upstream generation, and an upstream failure is a RUN_ERROR.</summary>
public sealed class RunUpstreamTests
{
    private static Dictionary<string, string?> Upstream(FakeUpstream upstream) =>
        Settings.Compatible(upstream.BaseUrl).With("AiStream:DefaultModel", "gpt-test");

    [Fact]
    public async Task CancelRun_OnAnUpstreamModel_AbortsTheUpstreamRequestAndEndsCancelled()
    {
        await using var upstream = await FakeUpstream.StartAsync(
            new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage-long.sse"), TimeSpan.FromMilliseconds(30)));
        await using var gateway = new GatewayFactory(Upstream(upstream));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var runId = await StartRunAsync(http, session);
        await watcher.ReadUntilAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Str("messageId") is not null && !e.Data["delta"]!.GetValue<string>().StartsWith("hi", StringComparison.Ordinal));
        var cancelledAt = DateTimeOffset.UtcNow;
        using var cancel = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var answer = await cancel.Content.ReadFromJsonAsync<JsonObject>();
        var abortedAt = await upstream.Aborted.WaitAsync(TimeSpan.FromSeconds(5));
        var rest = await watcher.ReadUntilAsync(e => e.Type == "RUN_FINISHED");

        Assert.Equal(200, (int)cancel.StatusCode);
        Assert.Equal("cancelled", answer!["outcome"]!.GetValue<string>());
        Assert.True(abortedAt - cancelledAt < TimeSpan.FromSeconds(1), $"the upstream saw the abort after {(abortedAt - cancelledAt).TotalMilliseconds} ms");
        var finished = rest[^1];
        Assert.Equal("cancelled", finished.OutcomeType);
        Assert.Equal("requested", finished.OutcomeReason);
        Assert.Contains(rest, e => e.Type == "TEXT_MESSAGE_END");
        Assert.Equal("gpt-test-upstream", Assert.Single(upstream.Requests).Body["model"]!.GetValue<string>());
    }

    [Fact]
    public async Task StartRun_UpstreamFailsOnceBeforeTheFirstToken_IsRetriedAndAnswersOnce()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        upstream.Then(new UpstreamScript.Fail(503));
        await using var gateway = new GatewayFactory(Upstream(upstream).With("AiStream:Providers:up:MaxRetries", 2));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartRunAsync(http, session);
        var events = await watcher.ReadUntilAsync(e => e.Type is "RUN_ERROR" or "RUN_FINISHED");

        Assert.Equal("RUN_FINISHED", events[^1].Type);
        Assert.Equal("success", events[^1].OutcomeType);
        Assert.Equal(2, upstream.RequestCount);
        var assistant = AssistantMessageId(events);
        Assert.Equal("I'm sorry, I can't assist with that request.", TextOf(events, assistant));
        Assert.Single(events, e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant");
    }

    [Fact]
    public async Task StartRun_UpstreamKeepsFailing_FallsBackToTheNextModel()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Fail(500));
        await using var gateway = new GatewayFactory(Upstream(upstream).With("AiStream:Models:gpt-test:Fallbacks:0", "sim"));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartRunAsync(http, session, "Tell me about fallbacks");
        var events = await watcher.ReadUntilAsync(e => e.Type is "RUN_ERROR" or "RUN_FINISHED");

        Assert.Equal("RUN_FINISHED", events[^1].Type);
        Assert.Equal(1, upstream.RequestCount);
        Assert.True(TextOf(events, AssistantMessageId(events)).Split(' ').Length > 20, "the simulated fallback answered in prose");
    }

    [Fact]
    public async Task StartRun_UpstreamFails_EndsWithRunErrorCarryingMessageAndCode()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Fail(500));
        await using var gateway = new GatewayFactory(Upstream(upstream));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartRunAsync(http, session);
        var events = await watcher.ReadUntilAsync(e => e.Type is "RUN_ERROR" or "RUN_FINISHED");

        var error = events[^1];
        Assert.Equal("RUN_ERROR", error.Type);
        Assert.Equal("upstream_error", error.Str("code"));
        Assert.False(string.IsNullOrWhiteSpace(error.Str("message")));
        Assert.DoesNotContain(events, e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant");
        await WaitUntilAsync(async () => ActiveRuns(await InfoAsync(http, session)).Count == 0, "the failed run to be gone");
    }
    [Fact]
    public async Task PostAgui_WithContext_GivesItToTheModelAsASystemMessage()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        await using var gateway = new GatewayFactory(Upstream(upstream));
        using var http = gateway.Client();
        var input = new JsonObject
        {
            ["threadId"] = NewSessionId(),
            ["runId"] = "ctx-1",
            ["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["content"] = "Where am I?" }),
            ["tools"] = new JsonArray(),
            ["context"] = new JsonArray(new JsonObject { ["description"] = "Current page", ["value"] = "/billing" }),
            ["state"] = new JsonObject(),
            ["forwardedProps"] = new JsonObject(),
        };

        using var response = await http.PostAsJsonAsync("agui", input);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Contains("RUN_FINISHED", body, StringComparison.Ordinal);
        var messages = Assert.Single(upstream.Requests).Body["messages"]!.AsArray();
        Assert.Equal("system", messages[0]!["role"]!.GetValue<string>());
        Assert.Contains("Current page: /billing", messages[0]!["content"]!.ToJsonString(), StringComparison.Ordinal);
        Assert.Equal("user", messages[1]!["role"]!.GetValue<string>());

        input["runId"] = "ctx-2";
        input["context"] = new JsonArray(new JsonObject { ["description"] = 5 });
        using var bad = await http.PostAsJsonAsync("agui", input);
        Assert.Equal(400, (int)bad.StatusCode);
    }
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Run_UsageIsAlwaysRecorded_FromTheUpstreamOrCountedWhenItSendsNone(bool upstreamSendsUsage)
    {
        var events = Fixtures.Events("openai-chat-text-usage.sse")
            .Where(e => upstreamSendsUsage || !e.Contains("\"choices\":[]", StringComparison.Ordinal)).ToList();
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(events));
        await using var gateway = new GatewayFactory(Upstream(upstream));
        using var http = gateway.Client();
        using var collector = new MetricCollector<long>(gateway.Services.GetRequiredService<IMeterFactory>(), "AiStream", "gen_ai.client.token.usage");
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartRunAsync(http, session, "Say something kind");
        await watcher.ReadUntilAsync(e => e.Type == "RUN_FINISHED");
        await collector.WaitForMeasurementsAsync(2, TimeSpan.FromSeconds(5));

        var snapshot = collector.GetMeasurementSnapshot();
        var output = snapshot.Single(m => (string)m.Tags["gen_ai.token.type"]! == "output");
        var input = snapshot.Single(m => (string)m.Tags["gen_ai.token.type"]! == "input");
        Assert.Equal("gpt-test", output.Tags["gen_ai.request.model"]);
        if (upstreamSendsUsage)
        {
            var usage = Fixtures.Payloads("openai-chat-text-usage.sse").Select(p => JsonNode.Parse(p)!["usage"]).Last(u => u is not null)!;
            Assert.Equal("upstream", output.Tags["aistream.usage.source"]);
            Assert.Equal(usage["completion_tokens"]!.GetValue<long>(), output.Value);
            Assert.Equal(usage["prompt_tokens"]!.GetValue<long>(), input.Value);
        }
        else
        {
            Assert.Equal("estimated", output.Tags["aistream.usage.source"]);
            Assert.Equal(new TokenCounter().Count("I'm sorry, I can't assist with that request."), output.Value);
            Assert.True(input.Value > 0);
        }
    }
}
