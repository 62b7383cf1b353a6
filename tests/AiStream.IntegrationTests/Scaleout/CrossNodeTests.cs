using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Scaleout.ScaleoutKit;

namespace AiStream.IntegrationTests.Scaleout;

/// <summary>
/// Two gateway processes (A and B) on one real Redis, shared by the tests of <see cref="CrossNodeTests"/> (each test
/// uses its own sessions). Besides the fast built-in <c>sim</c> they serve <c>slow</c> (a simulated model slow enough
/// to interrupt), <c>gpt-cancel</c> and <c>gpt-idle</c> (each on its own fake OpenAI-compatible provider, so a test can
/// hold the stream and see the abort), and cancel runs nobody watches after 2 s.
/// </summary>
public sealed class CrossNodeCluster : IAsyncLifetime
{
    public const double IdleCancelSeconds = 2;

    internal RedisServer Redis { get; private set; } = null!;

    internal FakeUpstream CancelUpstream { get; private set; } = null!;

    internal FakeUpstream IdleUpstream { get; private set; } = null!;

    internal GatewayProcess A { get; private set; } = null!;

    internal GatewayProcess B { get; private set; } = null!;

    /// <summary>What every node of this cluster is started with, on top of <see cref="ScaleoutKit.NodeSettings"/>.</summary>
    internal Dictionary<string, string?> Extra { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Redis = await RedisServer.StartAsync();
        CancelUpstream = await FakeUpstream.StartAsync();
        IdleUpstream = await FakeUpstream.StartAsync();
        Extra = Merge(
            SimModel("slow", tokensPerSecond: 30),
            UpstreamModel(CancelUpstream.BaseUrl, "gpt-cancel", "upc"),
            UpstreamModel(IdleUpstream.BaseUrl, "gpt-idle", "upi"),
            new Dictionary<string, string?> { ["AiStream:Sessions:IdleCancelSeconds"] = IdleCancelSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        var nodes = await StartNodesAsync(Redis.ConnectionString, ["A", "B"], Extra);
        A = nodes[0];
        B = nodes[1];
    }

    /// <summary>One more node of this cluster (for tests that kill it).</summary>
    internal Task<GatewayProcess> StartNodeAsync(string nodeId) => ScaleoutKit.StartNodeAsync(Redis.ConnectionString, nodeId, Extra);

    public async Task DisposeAsync()
    {
        foreach (var disposable in new IAsyncDisposable?[] { A, B, CancelUpstream, IdleUpstream, Redis })
        {
            if (disposable is not null)
            {
                await disposable.DisposeAsync();
            }
        }
    }
}

/// <summary>
/// What one node does is seen on the other: the same log (positions and bytes) over SSE and SignalR, publishes and
/// their idempotency keys, resuming on another node, cancels routed to the run's node, presence counted once across
/// nodes, runs of a dead node ended, idle-cancel counting remote watchers, readiness.
/// </summary>
public sealed class CrossNodeTests(CrossNodeCluster cluster) : IClassFixture<CrossNodeCluster>
{
    /// <summary>A prompt the simulated model answers at length (dozens of words).</summary>
    private const string LongPrompt = "Tell me about streaming, latency, backpressure and failures in distributed systems";

    [Fact]
    public async Task SseWatcherOnA_RunStartedOnB_SameEventsWithTheSamePositionsAndBytes()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        using var onA = await ScaleoutKit.WatchAsync(a, session, name: "A");
        using var onB = await ScaleoutKit.WatchAsync(b, session, name: "B");

        var runId = await StartRunAsync(b, session, "Tell me about streaming");
        var endOnA = await onA.WaitForRunEndAsync(runId);
        var endOnB = await onB.WaitForRunEndAsync(runId);

        Assert.Equal("RUN_FINISHED", endOnA.Type);
        Assert.Equal("success", endOnA.OutcomeType);
        Assert.Equal(endOnB.Json, endOnA.Json);
        // Every event after both snapshots, up to the end of the run: same positions, same bytes, same order.
        var from = Math.Max(onA.SnapshotHead!.Value, onB.SnapshotHead!.Value);
        var seenOnA = onA.Events.Where(e => e.Seq > from && e.Seq <= endOnA.Seq).ToList();
        var seenOnB = onB.Events.Where(e => e.Seq > from && e.Seq <= endOnB.Seq).ToList();
        Assert.Equal(seenOnB.Select(e => (e.Id, e.Json)), seenOnA.Select(e => (e.Id, e.Json)));
        AssertNoGapNoDuplicate(onA.Events, label: "A");
        AssertNoGapNoDuplicate(onB.Events, label: "B");
        AssertNoGapNoDuplicate(seenOnA, first: from + 1, label: "A after both snapshots");
        // The whole run is in there: the user message, RUN_STARTED, one assistant message, RUN_FINISHED.
        var run = WithoutPresence(seenOnA);
        Assert.Equal(["TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_STARTED", "TEXT_MESSAGE_START"], run.Take(5).Select(e => e.Type));
        Assert.Equal("Tell me about streaming", run[1].Str("delta"));
        Assert.Equal(runId, run[3].RunId);
        Assert.Equal(["TEXT_MESSAGE_END", "RUN_FINISHED"], run.TakeLast(2).Select(e => e.Type));
        Assert.All(run.Skip(5).SkipLast(2), e => Assert.Equal("TEXT_MESSAGE_CONTENT", e.Type));
        var text = RunText(onA.Events, runId);
        Assert.True(text.Length > 20, "the run said: " + text);
        Assert.Equal(text, RunText(onB.Events, runId));

        // A newcomer on A is caught up with exactly that text.
        using var late = await ScaleoutKit.WatchAsync(a, session, name: "A-late");
        var snapshot = await late.WaitForAsync(e => e.Type == "MESSAGES_SNAPSHOT", "the snapshot");
        Assert.True(snapshot.Seq >= endOnA.Seq);
        Assert.Equal(text, SnapshotText(snapshot));
    }

    [Fact]
    public async Task AgentRunOnA_WatchedOnB_TheWholeTraceWithTheSamePositions()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        using var onA = await ScaleoutKit.WatchAsync(a, session, name: "A");
        using var onB = await ScaleoutKit.WatchAsync(b, session, name: "B");

        var runId = await Agents.AgentTrace.StartAsync(a, session, Agents.AgentTrace.Agent("researcher", Agents.AgentTrace.Question));
        var endOnA = await onA.WaitForRunEndAsync(runId);
        var endOnB = await onB.WaitForRunEndAsync(runId);

        var traceOnB = onB.Events.Select(e => e.Data).ToList();
        Assert.Equal(Agents.AgentTrace.Researcher, Agents.AgentTrace.Pattern(traceOnB));
        Agents.AgentTrace.AssertResearcherContent(traceOnB);
        Assert.Equal(endOnA.Json, endOnB.Json);
        var from = Math.Max(onA.SnapshotHead!.Value, onB.SnapshotHead!.Value);
        Assert.Equal(onA.Events.Where(e => e.Seq > from && e.Seq <= endOnA.Seq).Select(e => (e.Id, e.Json)),
            onB.Events.Where(e => e.Seq > from && e.Seq <= endOnB.Seq).Select(e => (e.Id, e.Json)));
        AssertNoGapNoDuplicate(onB.Events, label: "B");

        // The state the agent wrote on A is the state B's newcomers get.
        using var late = await ScaleoutKit.WatchAsync(b, session, name: "B-late");
        var state = await late.WaitForAsync(e => e.Type == "STATE_SNAPSHOT", "the state");
        Assert.Equal("391", state.Data["snapshot"]!["findings"]!.GetValue<string>());
    }

    [Fact]
    public async Task SignalRClientOnB_RunStartedOnA_SameEventsAndPositionsAsSseOnA()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        await using var hub = await ScaleoutKit.ConnectHubAsync(cluster.B, clientId: "hub-" + session, memberName: "Hub");
        var join = await hub.JoinAsync(session);
        using var onA = await ScaleoutKit.WatchAsync(a, session, name: "A");

        var runId = await StartRunAsync(a, session, "Tell me about hubs");
        var endOnHub = await hub.WaitForRunEndAsync(session, runId);
        var endOnA = await onA.WaitForRunEndAsync(runId);

        Assert.True(join["snapshot"]!.GetValue<bool>());
        var joinHead = join["headSeq"]!.GetValue<long>();
        var hubEvents = hub.Events(session);
        Assert.Equal("MESSAGES_SNAPSHOT", hubEvents[0].Type);
        Assert.Equal(joinHead, hubEvents[0].Seq);
        Assert.Equal("RUN_FINISHED", endOnHub.Type);
        Assert.Equal("success", endOnHub.OutcomeType);
        Assert.Equal(endOnA.Seq, endOnHub.Seq);
        var from = Math.Max(joinHead, onA.SnapshotHead!.Value);
        var viaHub = hubEvents.Where(e => e.Seq > from && e.Seq <= endOnHub.Seq).ToList();
        var viaSse = onA.Events.Where(e => e.Seq > from && e.Seq <= endOnA.Seq).ToList();
        Assert.Equal(viaSse.Select(e => e.Seq), viaHub.Select(e => e.Seq));
        Assert.Equal(viaSse.Select(e => e.Json), viaHub.Select(e => e.Json));
        Assert.Contains(viaHub, e => e.Type == "RUN_STARTED" && e.RunId == runId);
        AssertNoGapNoDuplicate(hubEvents, label: "hub on B");
        AssertNoGapNoDuplicate(onA.Events, label: "SSE on A");
        var text = RunText(hubEvents, runId);
        Assert.True(text.Length > 20, "the run said: " + text);
        Assert.Equal(text, RunText(onA.Events, runId));
    }

    [Fact]
    public async Task PublishOnA_SeenOnB_SameIdempotencyKeyOnB_IsReplayedAndAppendsNothing()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        using var onB = await ScaleoutKit.WatchAsync(b, session, name: "B");
        var key = "order-" + Guid.NewGuid().ToString("N");
        var batch = new JsonArray(
            new JsonObject { ["type"] = "CUSTOM", ["name"] = "order.placed", ["value"] = new JsonObject { ["id"] = 7 } },
            new JsonObject { ["type"] = "CUSTOM", ["name"] = "order.paid", ["value"] = new JsonObject { ["id"] = 7, ["amount"] = 12.5 } });

        var (status, answer, response) = await PostEventsAsync(a, session, batch, key);
        response.Dispose();
        Assert.True(status == 201, $"publish on A answered {status}: {answer}");
        Assert.False(answer!["replayed"]!.GetValue<bool>());
        var seqs = answer["seqs"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
        Assert.Equal(2, seqs.Length);
        Assert.Equal(seqs[0] + 1, seqs[1]);

        var placed = await onB.WaitForAsync(e => e.Name == "order.placed", "order.placed on B");
        var paid = await onB.WaitForAsync(e => e.Name == "order.paid", "order.paid on B");
        Assert.Equal(seqs[0], placed.Seq);
        Assert.Equal(seqs[1], paid.Seq);
        Assert.Equal(7, placed.Value!["id"]!.GetValue<int>());
        Assert.Equal(12.5, paid.Value!["amount"]!.GetValue<double>());

        // The same key, retried on the other node (which mirrors the session) and on A again: replayed, same positions.
        foreach (var http in new[] { b, a })
        {
            var (again, replay, replayResponse) = await PostEventsAsync(http, session, batch, key);
            replayResponse.Dispose();
            Assert.True(again == 200, $"retry on {http.BaseAddress} answered {again}: {replay}");
            Assert.True(replay!["replayed"]!.GetValue<bool>());
            Assert.Equal(seqs, replay["seqs"]!.AsArray().Select(s => s!.GetValue<long>()));
        }

        // Nothing was appended: the next event takes the very next position, and B saw nothing in between.
        var marker = await MarkAsync(b, session);
        Assert.Equal(seqs[1] + 1, marker);
        await onB.WaitForSeqAsync(marker);
        Assert.Equal([seqs[0], seqs[1], marker], WithoutPresence(onB.LiveEvents()).Select(e => e.Seq));
        Assert.Single(onB.Events, e => e.Name == "order.placed");
        AssertNoGapNoDuplicate(onB.Events, label: "B");
        Assert.Equal(marker, (await InfoAsync(a, session))["headSeq"]!.GetValue<long>());
        Assert.Equal(marker, (await InfoAsync(b, session))["headSeq"]!.GetValue<long>());
    }

    [Fact]
    public async Task ResumeOnTheOtherNode_WithLastEventId_GetsExactlyTheRest()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        using var stayer = await ScaleoutKit.WatchAsync(b, session, name: "B-stayer");
        var onA = await ScaleoutKit.WatchAsync(a, session, clientId: "reader-" + session, name: "A");
        List<WatchedEvent> before;
        string runId;
        try
        {
            runId = await StartRunAsync(a, session, LongPrompt, model: "slow");
            await onA.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", 8, "the first assistant tokens"); // the user message's content is one
        }
        finally
        {
            onA.Dispose();
        }

        before = onA.Events;
        var lastId = before[^1].Id;
        Assert.DoesNotContain(before, e => e.IsRunEnd);

        using var resumed = await ScaleoutKit.WatchAsync(b, session, lastEventId: lastId, clientId: "reader-" + session, name: "B-resumed");
        var end = await resumed.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(15));
        var endOnStayer = await stayer.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(15));

        Assert.Equal("RUN_FINISHED", end.Type);
        Assert.Equal("success", end.OutcomeType);
        var rest = resumed.Events;
        Assert.Equal(lastId + 1, rest[0].Id);
        Assert.DoesNotContain(rest, e => e.Type == "MESSAGES_SNAPSHOT");
        AssertNoGapNoDuplicate(rest, first: lastId + 1, label: "resumed on B");
        var joined = before.Concat(rest).ToList();
        AssertNoGapNoDuplicate(joined, label: "A then B");
        // Exactly what the watcher that stayed got, event for event, over the same positions.
        var from = before.First(e => e.Type == "MESSAGES_SNAPSHOT").Seq;
        Assert.Equal(
            stayer.Events.Where(e => e.Seq > from && e.Seq <= endOnStayer.Seq).Select(e => (e.Id, e.Json)),
            joined.Where(e => e.Seq > from && e.Seq <= end.Seq).Select(e => (e.Id, e.Json)));
        var text = RunText(joined, runId);
        Assert.Equal(RunText(stayer.Events, runId), text);
        Assert.True(RunText(before, runId).Length > 0 && RunText(before, runId).Length < text.Length, "the first watcher read part of the run");
        Assert.Contains(RunText(before, runId), text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ResumeOnANodeNewToTheSession_FromBeforeItsCheckpoint_GetsAReplayNotASnapshot()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        // Five events written while no node mirrors the session (so no checkpoint yet)...
        var seqs = new List<long>();
        for (var i = 1; i <= 5; i++)
        {
            seqs.Add(await MarkAsync(a, session, "step." + i));
        }

        Assert.Equal([1L, 2L, 3L, 4L, 5L], seqs);

        // ...then a watcher on A: A mirrors the session, and checkpoints its projection at the head (the watcher's
        // join) on its next maintenance pass. The stream keeps every event.
        using var onA = await ScaleoutKit.WatchAsync(a, session, name: "A");
        var head = (await onA.WaitForAsync(e => e.Name == "presence.join", "the watcher's join")).Seq;
        await WaitUntilAsync(async () => await CheckpointSeqAsync(session) == head, "A to checkpoint the session at " + head);
        Assert.Contains("2-0", await cluster.Redis.CommandAsync("XRANGE", $"aistream:{{{session}}}:log", "-", "+"), StringComparison.Ordinal);

        // A client that read up to step.2 (anywhere) resumes on B, which has never seen the session.
        using var resumed = await ScaleoutKit.WatchAsync(b, session, lastEventId: 2, name: "B-resumed");
        await resumed.WaitForSeqAsync(head);

        Assert.DoesNotContain(resumed.Events, e => e.Type == "MESSAGES_SNAPSHOT");
        Assert.Equal(["step.3", "step.4", "step.5"], resumed.Events.Where(e => e.Name?.StartsWith("step.", StringComparison.Ordinal) == true).Select(e => e.Name));
        AssertNoGapNoDuplicate(resumed.Events, first: 3, label: "resumed on B");
    }

    /// <summary>The position of the session's checkpoint in Redis (<c>seq\n[...]</c>), or null when there is none.</summary>
    private async Task<long?> CheckpointSeqAsync(string session)
    {
        var reply = await cluster.Redis.CommandAsync("GET", $"aistream:{{{session}}}:cp");
        if (reply.StartsWith("$-1", StringComparison.Ordinal))
        {
            return null;
        }

        var value = reply[(reply.IndexOf('\n', StringComparison.Ordinal) + 1)..];
        return long.Parse(value[..value.IndexOf('\n', StringComparison.Ordinal)], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task CancelOnA_RunOnB_EndsCancelledEverywhereAndAbortsTheUpstream()
    {
        var session = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        var upstream = cluster.CancelUpstream;
        using var gate = new SemaphoreSlim(0);
        upstream.Then(new UpstreamScript.Gated(Fixtures.Events("openai-chat-text-usage-long.sse"), gate));
        using var onA = await ScaleoutKit.WatchAsync(a, session, name: "A");
        using var onB = await ScaleoutKit.WatchAsync(b, session, name: "B");

        var runId = await StartRunAsync(b, session, "hi", model: "gpt-cancel");
        gate.Release(4); // the role chunk and three words; then the upstream holds the stream open
        await onA.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", 4, "three words of the answer on A");
        await onB.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", 4, "three words of the answer on B");
        Assert.False(upstream.Aborted.IsCompleted);

        // B subscribes to its control channel when it starts its first run, without waiting for Redis to confirm; a
        // cancel published before that reaches nobody and is taken for a dead node (see the report). Not what this
        // test is about: make sure B listens.
        // (B's channel is aistream:{node:<B's node id>}:ctl, the node id being "B" or "B.<incarnation>".)
        await WaitUntilAsync(async () => (await cluster.Redis.CommandAsync("PUBSUB", "SHARDCHANNELS", "aistream:{node:B[}.]*")).StartsWith("*1\r\n", StringComparison.Ordinal),
            "B to listen on its control channel");
        using var cancel = await a.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var answer = JsonNode.Parse(await cancel.Content.ReadAsStringAsync())!;
        var endOnA = await onA.WaitForRunEndAsync(runId);
        var endOnB = await onB.WaitForRunEndAsync(runId);
        var aborted = await Task.WhenAny(upstream.Aborted, Task.Delay(TimeSpan.FromSeconds(10))) == upstream.Aborted;
        Assert.True(aborted, $"the upstream request was not aborted; cancel answered {answer}, the run ended with {endOnB}");

        Assert.Equal(HttpStatusCode.OK, cancel.StatusCode);
        Assert.Equal(runId, answer["runId"]!.GetValue<string>());
        Assert.Equal("cancelled", answer["outcome"]!.GetValue<string>());
        foreach (var (watcher, end) in new[] { (onA, endOnA), (onB, endOnB) })
        {
            Assert.Equal("RUN_FINISHED", end.Type);
            Assert.Equal("cancelled", end.OutcomeType);
            Assert.Equal("requested", end.OutcomeReason);
            var run = WithoutPresence(watcher.Events);
            var at = run.IndexOf(end);
            Assert.Equal("TEXT_MESSAGE_END", run[at - 1].Type);
            Assert.Equal(AssistantMessageId(run), run[at - 1].MessageId);
            Assert.Equal("Holiday Name", RunText(watcher.Events, runId).Replace("**", "", StringComparison.Ordinal).Trim());
            AssertNoGapNoDuplicate(watcher.Events, label: watcher.Name);
        }

        Assert.Equal(endOnA.Json, endOnB.Json);
        Assert.Single(upstream.Requests);
        Assert.Empty(ActiveRuns(await InfoAsync(a, session)));
        Assert.Empty(ActiveRuns(await InfoAsync(b, session)));
        // Once the run's node has let go of it, a further cancel finds no run. (Between RUN_FINISHED and that moment the
        // run is still registered in Redis, and a cancel answers 200 "cancelled": see the report.)
        await WaitUntilAsync(async () =>
        {
            using var again = await a.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
            return again.StatusCode == HttpStatusCode.NotFound;
        }, "a cancel of the ended run to answer 404", TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task Presence_OneMemberWithTabsOnTwoNodes_CountsOnce_AndADeadNodesTabExpiresWithoutALeave()
    {
        var session = NewSessionId();
        var member = "ann-" + session;
        await using var k = await cluster.StartNodeAsync("K-presence");
        using var onK = k.Client();
        using var b = cluster.B.Client();
        using var tabOnB = await ScaleoutKit.WatchAsync(b, session, clientId: member, memberName: "Ann", name: "tab on B");
        using var tabOnK = await ScaleoutKit.WatchAsync(onK, session, clientId: member, memberName: "Ann", name: "tab on K");

        foreach (var http in new[] { onK, b })
        {
            var presence = await PresenceAsync(http, session);
            Assert.Equal(1, presence["total"]!.GetValue<int>());
            var listed = Assert.Single(presence["members"]!.AsArray());
            Assert.Equal(member, listed!["id"]!.GetValue<string>());
            Assert.Equal("Ann", listed["name"]!.GetValue<string>());
            Assert.Equal(2, listed["connections"]!.GetValue<int>());
        }

        var marker = await MarkAsync(b, session);
        await tabOnB.WaitForSeqAsync(marker);
        await tabOnK.WaitForSeqAsync(marker);
        Assert.Single(tabOnB.Events, e => e.Name == "presence.join" && e.MemberId == member);
        Assert.DoesNotContain(tabOnK.LiveEvents(), e => e.Name == "presence.join");

        // The tab on K is renewed by K alone: once K is gone it expires within the TTL (plus a sweep or two).
        k.Kill();
        await WaitUntilAsync(async () => (await PresenceAsync(b, session))["members"]!.AsArray()
                .SingleOrDefault(m => m!["id"]!.GetValue<string>() == member)?["connections"]?.GetValue<int>() == 1,
            "the tab on the dead node to expire", TimeSpan.FromSeconds(PresenceTtlSeconds + 4));

        var after = await PresenceAsync(b, session);
        Assert.Equal(1, after["total"]!.GetValue<int>());
        var marker2 = await MarkAsync(b, session);
        await tabOnB.WaitForSeqAsync(marker2);
        Assert.DoesNotContain(tabOnB.Events, e => e.Name == "presence.leave" && e.MemberId == member);
        Assert.Single(tabOnB.Events, e => e.Name == "presence.join" && e.MemberId == member);
        AssertNoGapNoDuplicate(tabOnB.Events, label: "tab on B");
    }

    [Fact]
    public async Task NodeDiesMidRun_WatcherOnOtherNode_GetsRunErrorNodeLost_AfterTheOpenMessageIsClosed()
    {
        var session = NewSessionId();
        await using var k = await cluster.StartNodeAsync("K-orphan");
        using var onK = k.Client();
        using var b = cluster.B.Client();
        using var onB = await ScaleoutKit.WatchAsync(b, session, name: "B");

        var runId = await StartRunAsync(onK, session, LongPrompt, model: "slow");
        await onB.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", 4, "a few words of the answer");
        // Within the node timeout (plus maintenance ticks), B ends the run its dead owner cannot.
        k.Kill();
        var end = await onB.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(NodeTimeoutSeconds + 4));

        Assert.Equal("RUN_ERROR", end.Type);
        Assert.Equal("node_lost", end.Str("code"));
        Assert.Contains("K-orphan", end.Str("message"), StringComparison.Ordinal);
        var run = WithoutPresence(onB.Events);
        var at = run.IndexOf(end);
        var messageId = AssistantMessageId(run);
        Assert.Equal("TEXT_MESSAGE_END", run[at - 1].Type);
        Assert.Equal(messageId, run[at - 1].MessageId);
        Assert.Single(run, e => e.Type == "TEXT_MESSAGE_END" && e.MessageId == messageId);
        Assert.Single(run, e => e.IsRunEnd);
        Assert.NotEmpty(RunText(onB.Events, runId));
        AssertNoGapNoDuplicate(onB.Events, label: "B");
        Assert.Empty(ActiveRuns(await InfoAsync(b, session)));
    }

    [Fact]
    public async Task RunEndedAsNodeLost_ItsNodeComesBack_WritesNothingMoreForIt()
    {
        var session = NewSessionId();
        await using var k = await cluster.StartNodeAsync("K-paused");
        using var onK = k.Client();
        using var b = cluster.B.Client();
        using var onB = await ScaleoutKit.WatchAsync(b, session, name: "B");
        var runId = await StartRunAsync(onK, session, LongPrompt, model: "slow");
        await onB.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", 4, "a few words of the answer");

        // K stops answering (a long pause, a frozen VM, a partition): to the others it is gone, and its run is ended.
        await SignalAsync(k, "STOP");
        WatchedEvent end;
        try
        {
            end = await onB.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(NodeTimeoutSeconds + 6));
        }
        finally
        {
            await SignalAsync(k, "CONT");
        }

        Assert.Equal("RUN_ERROR", end.Type);
        Assert.Equal("node_lost", end.Str("code"));

        // K is back: its run's next write is refused (the run was declared lost), K stops the run and logs it (a
        // warning naming the run). Then a marker through B: everything K could have written is before it.
        await WaitUntilAsync(() => Task.FromResult(k.Output.Split('\n').Any(l => l.Contains(runId, StringComparison.Ordinal) && l.Contains("stopped", StringComparison.Ordinal))),
            "K to log that it stopped " + runId);
        var marker = await MarkAsync(b, session);
        await onB.WaitForSeqAsync(marker);
        var afterEnd = (Func<WatchedEvent, bool>)(e => e.Seq > end.Seq && !e.IsPresenceChange && (e.RunId == runId || e.Type.StartsWith("TEXT_MESSAGE", StringComparison.Ordinal)));
        Assert.DoesNotContain(onB.Events, e => afterEnd(e));
        Assert.Single(onB.Events, e => e.IsRunEnd && e.RunId == runId);
        AssertNoGapNoDuplicate(onB.Events, label: "B");
    }

    /// <summary>Sends a signal (STOP, CONT) to a gateway process.</summary>
    private static async Task SignalAsync(GatewayProcess node, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"kill -{signal} {node.ProcessId}"]) { RedirectStandardError = true })!;
        await kill.WaitForExitAsync();
        Assert.Equal(0, kill.ExitCode);
    }

    [Fact]
    public async Task IdleCancel_CountsWatchersOnOtherNodes_AndCancelsARunNobodyWatches()
    {
        var watchedSession = NewSessionId();
        var idleSession = NewSessionId();
        using var a = cluster.A.Client();
        using var b = cluster.B.Client();
        var upstream = cluster.IdleUpstream;
        var events = Fixtures.Events("openai-chat-text-usage-long.sse");
        using var watchedGate = new SemaphoreSlim(0);
        using var idleGate = new SemaphoreSlim(0);
        upstream.Then(new UpstreamScript.Gated(events, watchedGate), new UpstreamScript.Gated(events, idleGate));
        using var onA = await ScaleoutKit.WatchAsync(a, watchedSession, name: "A");

        var watchedRun = await StartRunAsync(b, watchedSession, "hi", model: "gpt-idle");
        await WaitUntilAsync(() => Task.FromResult(upstream.RequestCount >= 1), "the watched run's upstream request");
        var idleRun = await StartRunAsync(b, idleSession, "hi", model: "gpt-idle");
        var started = Stopwatch.StartNew();
        watchedGate.Release(2);
        idleGate.Release(2);

        // Nobody watches the second session anywhere: it is cancelled once the idle limit passed.
        await WaitUntilAsync(async () => !ActiveRuns(await InfoAsync(b, idleSession)).Contains(idleRun),
            "the unwatched run to be cancelled", TimeSpan.FromSeconds(IdleCancelLimit + 6));
        var idleEndedAfter = started.Elapsed;
        Assert.True(idleEndedAfter >= TimeSpan.FromSeconds(CrossNodeCluster.IdleCancelSeconds), $"cancelled after {idleEndedAfter.TotalSeconds:F1} s");

        // The run watched only from A outlived the limit by a good margin, and still runs.
        var margin = TimeSpan.FromSeconds(IdleCancelLimit + 1) - started.Elapsed;
        if (margin > TimeSpan.Zero)
        {
            await Task.Delay(margin); // nothing to wait for: the point is that nothing happens
        }

        Assert.Contains(watchedRun, ActiveRuns(await InfoAsync(b, watchedSession)));
        Assert.DoesNotContain(onA.Events, e => e.IsRunEnd);
        watchedGate.Release(events.Count);
        var watchedEnd = await onA.WaitForRunEndAsync(watchedRun);
        Assert.Equal("RUN_FINISHED", watchedEnd.Type);
        Assert.Equal("success", watchedEnd.OutcomeType);
        Assert.Equal(FixtureText(events), RunText(onA.Events, watchedRun));
        AssertNoGapNoDuplicate(onA.Events, label: "A");

        // The unwatched run's end is in its log: cancelled, because idle.
        using var replay = await ScaleoutKit.WatchAsync(b, idleSession, after: 0, name: "replay on B");
        var idleEnd = await replay.WaitForRunEndAsync(idleRun);
        Assert.Equal("RUN_FINISHED", idleEnd.Type);
        Assert.Equal("cancelled", idleEnd.OutcomeType);
        Assert.Equal("idle", idleEnd.OutcomeReason);
        Assert.DoesNotContain(replay.Events, e => e.Type == "MESSAGES_SNAPSHOT");
        AssertNoGapNoDuplicate(replay.Events, first: 1, label: "replay");
    }

    [Fact]
    public async Task Readyz_WithRedisUp_Is200OnEveryNode()
    {
        foreach (var node in new[] { cluster.A, cluster.B })
        {
            using var http = node.Client();
            await WaitUntilReadyAsync(http); // the tokenizer loads in the background right after start
            using var ready = await http.GetAsync("readyz");
            var body = await ready.Content.ReadAsStringAsync();
            Assert.True(ready.StatusCode == HttpStatusCode.OK, $"readyz on {node.BaseAddress} answered {(int)ready.StatusCode}: {body}");
            Assert.Equal("Healthy", JsonNode.Parse(body)!["status"]!.GetValue<string>());
        }
    }

    /// <summary>Idle-cancel checks once a second: a run nobody watches ends within the limit plus two checks.</summary>
    private const double IdleCancelLimit = CrossNodeCluster.IdleCancelSeconds + 2;

    /// <summary>The text a recorded provider stream says.</summary>
    private static string FixtureText(IReadOnlyList<string> events) => string.Concat(events
        .SelectMany(e => Fixtures.DataPayloads(e))
        .Select(p => JsonNode.Parse(p)!["choices"]!.AsArray().FirstOrDefault()?["delta"]?["content"])
        .OfType<JsonValue>()
        .Select(c => c.GetValue<string>()));
}
