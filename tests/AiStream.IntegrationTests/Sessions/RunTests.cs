using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>Runs: cancelling, idle-cancelling and what <c>GET /api/sessions/{id}</c> says about them.</summary>
public sealed class RunTests
{
    [Fact]
    public async Task CancelRun_WhileStreaming_EndsTheRunCancelledForEveryWatcher()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 100));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var one = await SessionWatcher.OpenAsync(http, session);
        using var two = await SessionWatcher.OpenAsync(http, session);
        var reference = NewSessionId();
        using var uncancelled = await SessionWatcher.OpenAsync(http, reference);
        await StartRunAsync(http, reference);
        var runId = await StartRunAsync(http, session);
        await one.ReadUntilAsync(_ => one.Seen.Count(e => e.Type == "TEXT_MESSAGE_CONTENT") >= 4);

        using var cancel = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var answer = await cancel.Content.ReadFromJsonAsync<JsonObject>();
        // Whatever the run wrote is in the log before the cancel answers; a marker published now comes right after it.
        var marker = await PublishAsync(http, session, Custom("marker", null));
        var seenByOne = await one.ReadUntilAsync(e => e.Type == "CUSTOM");
        var seenByTwo = await two.ReadUntilTypeAsync("CUSTOM");
        var info = await InfoAsync(http, session);

        Assert.Equal(200, (int)cancel.StatusCode);
        Assert.Equal(runId, answer!["runId"]!.GetValue<string>());
        Assert.Equal("cancelled", answer["outcome"]!.GetValue<string>());
        var all = one.Seen;
        var messageId = AssistantMessageId(all);
        Assert.Equal(["TEXT_MESSAGE_END", "RUN_FINISHED", "CUSTOM"], all.TakeLast(3).Select(e => e.Type));
        Assert.Equal(messageId, all[^3].Str("messageId"));
        var finished = all[^2];
        Assert.Equal(runId, finished.Str("runId"));
        Assert.Equal("cancelled", finished.OutcomeType);
        Assert.Equal("requested", finished.OutcomeReason);
        Assert.Equal(marker[0], all[^1].Seq);
        // Between the end of the run and the marker there is at most the run's agent leaving the presence list.
        Assert.All(one.Events.Where(e => e.Seq > finished.Seq && e.Seq < marker[0]), e => Assert.True(e.IsPresence, e.ToString()));
        Assert.Single(all, e => e.Type == "RUN_FINISHED");
        // Apart from the join snapshots (stamped at join time), both watchers got the same bytes.
        var bothLive = Math.Max(one.SnapshotHead!.Value, two.SnapshotHead!.Value);
        Assert.Equal(one.Events.Where(e => e.Seq > bothLive).Select(e => e.Json), two.Events.Where(e => e.Seq > bothLive).Select(e => e.Json));
        Assert.DoesNotContain(runId, ActiveRuns(info));
        // It was cut short: what it said is a strict prefix of the same (deterministic) answer left to finish.
        var full = await uncancelled.ReadUntilTypeAsync("RUN_FINISHED");
        var said = TextOf(all, messageId);
        Assert.StartsWith(said, TextOf(full, AssistantMessageId(full)), StringComparison.Ordinal);
        Assert.True(said.Length < TextOf(full, AssistantMessageId(full)).Length, said);
        Assert.NotEmpty(seenByOne);
        Assert.NotEmpty(seenByTwo);
    }

    [Fact]
    public async Task CancelRun_UnknownRun_Returns404Problem()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();

        using var response = await http.PostAsync($"api/sessions/{NewSessionId()}/runs/run_nope/cancel", null);
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(404, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("run_not_found", problem!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task CancelRun_RightAfterRunFinishedWasSeen_Returns404()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);
        var answers = new List<int>();

        for (var i = 0; i < 30; i++)
        {
            var runId = await StartRunAsync(http, session);
            await watcher.ReadUntilAsync(e => e.Type == "RUN_FINISHED" && e.Str("runId") == runId);
            using var response = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
            answers.Add((int)response.StatusCode);
        }

        Assert.All(answers, status => Assert.Equal(404, status));
    }

    [Fact]
    public async Task Run_NobodyWatchesForIdleLimit_IsCancelledWithReasonIdle()
    {
        var time = new FakeTimeProvider();
        // At one word per fake second the run cannot finish on its own in the ten seconds this test advances.
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 1).With("AiStream:Sessions:IdleCancelSeconds", 3), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        var runId = await StartRunAsync(http, session);
        // The run's agent is present once the run executes, and its idle watch is set by then.
        await WaitUntilAsync(async () => (await http.GetStringAsync($"api/sessions/{session}/presence")).Contains("agent:" + runId, StringComparison.Ordinal),
            "the run to execute");
        var start = time.GetUtcNow();

        var activeAt = new List<bool>();
        for (var second = 1; second <= 10; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(50); // timers fired by Advance run their continuations on the thread pool
            activeAt.Add(ActiveRuns(await InfoAsync(http, session)).Contains(runId));
            if (!activeAt[^1])
            {
                break;
            }
        }

        // The watch ticks every second: unwatched since the first tick, cancelled three seconds later.
        Assert.Equal([true, true, true], activeAt.Take(3));
        Assert.False(activeAt[^1], "the run was still active after 10 s unwatched");
        Assert.InRange(time.GetUtcNow() - start, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(5));
        using var replay = await SessionWatcher.OpenAsync(http, session, after: 0);
        var events = await replay.ReadUntilTypeAsync("RUN_FINISHED");
        Assert.Equal(["TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_STARTED", "TEXT_MESSAGE_START"], events.Take(5).Select(e => e.Type));
        Assert.Equal("TEXT_MESSAGE_END", events[^2].Type);
        var finished = events[^1];
        Assert.Equal(runId, finished.Str("runId"));
        Assert.Equal("cancelled", finished.OutcomeType);
        Assert.Equal("idle", finished.OutcomeReason);
        Assert.InRange(events.Count(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Str("messageId") == AssistantMessageId(events)), 2, 7);
    }

    [Fact]
    public async Task Run_WatchedPastIdleLimit_IsNotCancelled()
    {
        var time = new FakeTimeProvider();
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 1).With("AiStream:Sessions:IdleCancelSeconds", 3), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);
        var runId = await StartRunAsync(http, session);
        await watcher.ReadUntilAsync(_ => watcher.Seen.Count(e => e.Type == "TEXT_MESSAGE_CONTENT") >= 2);

        for (var second = 1; second <= 8; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(50);
        }

        // One word per advanced second, and no end.
        var words = await watcher.ReadUntilAsync(_ => watcher.Seen.Count(e => e.Type == "TEXT_MESSAGE_CONTENT") >= 10);
        var info = await InfoAsync(http, session);
        Assert.Contains(runId, ActiveRuns(info));
        Assert.DoesNotContain(watcher.Seen, e => e.Type == "RUN_FINISHED");

        using var cancel = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var finished = await watcher.ReadUntilTypeAsync("RUN_FINISHED");
        Assert.Equal(200, (int)cancel.StatusCode);
        Assert.Equal("requested", finished[^1].OutcomeReason);
        Assert.NotEmpty(words);
    }

    [Fact]
    public async Task SessionInfo_AsWatchersAndRunsComeAndGo_ReportsHeadWatchersAndActiveRuns()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 200));
        using var http = gateway.Client();
        var session = NewSessionId();

        var empty = await InfoAsync(http, session);
        var one = await SessionWatcher.OpenAsync(http, session);
        var withOne = await InfoAsync(http, session);
        using var two = await SessionWatcher.OpenAsync(http, session);
        var withTwo = await InfoAsync(http, session);
        one.Dispose();
        await WaitUntilAsync(async () => (await InfoAsync(http, session))["watchers"]!.GetValue<int>() == 1, "the closed watcher to be gone");
        var runId = await StartRunAsync(http, session);
        var running = await InfoAsync(http, session);
        var events = await two.ReadUntilTypeAsync("RUN_FINISHED");
        var done = await InfoAsync(http, session);
        var marker = await PublishAsync(http, session, Custom("marker", null));
        await two.ReadUntilTypeAsync("CUSTOM");
        var afterMarker = await InfoAsync(http, session);

        Assert.Equal(session, empty["sessionId"]!.GetValue<string>());
        Assert.Equal(0, empty["headSeq"]!.GetValue<long>());
        Assert.Equal(0, empty["watchers"]!.GetValue<int>());
        Assert.Empty(ActiveRuns(empty));
        Assert.Equal(1, withOne["watchers"]!.GetValue<int>());
        Assert.Equal(2, withTwo["watchers"]!.GetValue<int>());
        Assert.Equal([runId], ActiveRuns(running));
        Assert.Equal(1, running["watchers"]!.GetValue<int>());
        // The user message's three events and RUN_STARTED are in before the 202; the answer is still streaming.
        Assert.InRange(running["headSeq"]!.GetValue<long>(), 4, events[^1].Seq - 1);
        Assert.Empty(ActiveRuns(done));
        Assert.InRange(done["headSeq"]!.GetValue<long>(), events[^1].Seq, marker[0] - 1);
        Assert.Equal(marker[0], afterMarker["headSeq"]!.GetValue<long>());
        Assert.Equal(two.Events[^1].Seq, afterMarker["headSeq"]!.GetValue<long>());
        Assert.Equal(1, done["firstSeq"]!.GetValue<long>());
    }
}
