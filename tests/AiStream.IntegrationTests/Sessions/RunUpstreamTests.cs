using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
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
        Assert.Equal("run_failed", error.Str("code"));
        Assert.False(string.IsNullOrWhiteSpace(error.Str("message")));
        Assert.DoesNotContain(events, e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant");
        await WaitUntilAsync(async () => ActiveRuns(await InfoAsync(http, session)).Count == 0, "the failed run to be gone");
    }
}
