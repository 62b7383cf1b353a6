using System.Globalization;
using AiStream.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace AiStream.IntegrationTests.Scaleout;

/// <summary>One Redis and node B (which never dies) shared by <see cref="NodeDeathTests"/>: every test starts the nodes it kills.</summary>
public sealed class NodeDeathFixture : IAsyncLifetime
{
    internal RedisServer Redis { get; private set; } = null!;

    internal GatewayProcess B { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Redis = await RedisServer.StartAsync();
        B = await ScaleoutKit.StartNodeAsync(Redis.ConnectionString, "B", NodeDeathTests.Steady);
    }

    public async Task DisposeAsync()
    {
        if (B is not null)
        {
            await B.DisposeAsync();
        }

        if (Redis is not null)
        {
            await Redis.DisposeAsync();
        }
    }
}

/// <summary>
/// A node dies (SIGKILL) while a client watches a session on it: the client reconnects to another node with
/// <c>Last-Event-ID</c> and continues exactly where it was, because every node serves every session from Redis. And a
/// node that runs a run dies, comes back under the same id, or only stalls: its run ends exactly once.
/// </summary>
public sealed class NodeDeathTests(NodeDeathFixture fixture, ITestOutputHelper output) : IClassFixture<NodeDeathFixture>
{
    /// <summary>
    /// About 80 words a second: a run lasts about a second, long enough to die in the middle of it. Watchers that fall
    /// behind on a loaded machine get every delta as its own event (no coalescing: that is BackpressureTests' subject),
    /// so positions can be compared one by one.
    /// </summary>
    internal static readonly Dictionary<string, string?> SlowSim = Settings(tokensPerSecond: 80);

    /// <summary>
    /// A node that must not be taken for dead: its liveness lasts 10 s instead of 2, so a node that merely stalls on a
    /// loaded machine is not declared gone while it runs a run (see
    /// <see cref="NodePausedLongerThanTheNodeTimeout_ItsRunEndsOnce_AndNothingOfTheRunFollowsTheEnd"/> for what happens then).
    /// </summary>
    internal static readonly Dictionary<string, string?> Steady = Settings(tokensPerSecond: 80, ("AiStream:Scaleout:NodeTimeoutSeconds", "10"));

    private string Redis => fixture.Redis.ConnectionString;

    /// <summary>The simulated model at a pace, without coalescing, plus <paramref name="more"/>.</summary>
    internal static Dictionary<string, string?> Settings(double tokensPerSecond, params (string Key, string Value)[] more)
    {
        var settings = ScaleoutKit.Sim(tokensPerSecond);
        settings["AiStream:Sessions:CoalesceThreshold"] = "100000";
        settings["AiStream:Sessions:SubscriberHardLimit"] = "200000";
        foreach (var (key, value) in more)
        {
            settings[key] = value;
        }

        return settings;
    }

    [Fact]
    public async Task WatchedNodeKilledMidRun_TwentyTimes_WatcherResumesOnTheRunningNodeWithTheSameTextAndNoGapOrDuplicate()
    {
        var failures = await NodeDeathDrill.RepeatAsync(20, fixture.B,
            n => ScaleoutKit.StartNodeAsync(Redis, "A" + n.ToString(CultureInfo.InvariantCulture), SlowSim),
            (doomed, survivor, rep, random) => NodeDeathDrill.ResumeAfterKillAsync(doomed, survivor, runOnDoomed: false, random, reconnectAfterEnd: false), output);

        Assert.True(failures.Count == 0, "The drill failed:\n\n" + string.Join("\n\n", failures));
    }

    [Fact]
    public async Task NodeRunningTheRunKilled_WatcherElsewhereGetsNodeLost_AndTheDeadNodesWatcherResumesThereToTheSameEnd()
    {
        // A run of about two seconds on a node that lapses 2 s after its death, killed within its first ten words: the
        // death always comes mid-run. Once resuming at once (before B ends the orphan), once after B ended it.
        var failures = await NodeDeathDrill.RepeatAsync(2, fixture.B,
            n => ScaleoutKit.StartNodeAsync(Redis, "R" + n.ToString(CultureInfo.InvariantCulture), Settings(tokensPerSecond: 40)),
            (doomed, survivor, rep, random) => NodeDeathDrill.ResumeAfterKillAsync(doomed, survivor, runOnDoomed: true, random, reconnectAfterEnd: rep == 2,
                maxWordsBeforeKill: 10), output);

        Assert.True(failures.Count == 0, "The drill failed:\n\n" + string.Join("\n\n", failures));
    }

    [Fact]
    public async Task NodeKilledMidRunAndRestartedWithTheSameNodeId_TheRunItWasRunningStillEnds()
    {
        // A fixed NodeId (as a StatefulSet pod name or a container hostname would give) and a restart quicker than the
        // node timeout: the new process renews the id's liveness before anyone noticed the old one died.
        const int NodeTimeout = 10;
        var settings = Settings(tokensPerSecond: 80, ("AiStream:Scaleout:NodeTimeoutSeconds", NodeTimeout.ToString(CultureInfo.InvariantCulture)));
        var a = await ScaleoutKit.StartNodeAsync(Redis, "S", settings);
        try
        {
            var session = ScaleoutKit.NewSessionId();
            using var toB = fixture.B.Client();
            using var w2 = await ScaleoutKit.WatchAsync(toB, session, clientId: "w2", name: "W2@B");
            string runId;
            using (var toA = a.Client())
            {
                runId = await ScaleoutKit.StartRunAsync(toA, session, NodeDeathDrill.Prompt);
            }

            var started = await w2.WaitForAsync(e => e.Type == "RUN_STARTED" && e.RunId == runId, "RUN_STARTED");
            await w2.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Seq > started.Seq, 5, "five words");
            var port = a.Port;
            a.Kill();
            var killed = System.Diagnostics.Stopwatch.StartNew();
            await a.DisposeAsync();
            a = await ScaleoutKit.StartNodeAsync(Redis, "S", settings, port);
            output.WriteLine($"S restarted under the same node id {killed.Elapsed.TotalSeconds:F1} s after the kill (its liveness lapses {NodeTimeout} s after it)");

            // The old process's run is gone with it: whoever notices must end it for its watchers, on both nodes.
            using var toRestarted = a.Client();
            using var w1 = await ScaleoutKit.WatchAsync(toRestarted, session, lastEventId: started.Seq, clientId: "w1", name: "W1@S-restarted");
            var end = await w2.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(NodeTimeout + 4));
            Assert.Equal("RUN_ERROR", end.Type);
            Assert.Equal("node_lost", end.Str("code"));
            Assert.Equal(end.Json, (await w1.WaitForRunEndAsync(runId)).Json);
            Assert.Empty(ScaleoutKit.ActiveRuns(await ScaleoutKit.InfoAsync(toRestarted, session)));
        }
        finally
        {
            await a.DisposeAsync();
        }
    }

    [Fact]
    public async Task NodePausedLongerThanTheNodeTimeout_ItsRunEndsOnce_AndNothingOfTheRunFollowsTheEnd()
    {
        // P runs a run and stops answering (SIGSTOP: a VM or container freeze, a long GC pause, a starved process) for
        // longer than its liveness lasts (2 s), so B ends the run as orphaned. When P wakes up, the run it was still
        // running must not go on writing into the log after its end. P's presence connections outlast the pause, so
        // the agent's leave (logged when P's run finally completes) tells when P is done.
        var settings = Settings(tokensPerSecond: 40, ("AiStream:Presence:TtlSeconds", "60"));
        await using var p = await ScaleoutKit.StartNodeAsync(Redis, "P", settings);
        using var toB = fixture.B.Client();
        using var toP = p.Client();
        var session = ScaleoutKit.NewSessionId();
        using var w = await ScaleoutKit.WatchAsync(toB, session, clientId: "w", name: "W@B");
        var runId = await ScaleoutKit.StartRunAsync(toP, session, NodeDeathDrill.Prompt);
        var started = await w.WaitForAsync(e => e.Type == "RUN_STARTED" && e.RunId == runId, "RUN_STARTED");
        await w.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Seq > started.Seq, 5, "five words");

        await SignalAsync(p, "STOP");
        try
        {
            var end = await w.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(ScaleoutKit.NodeTimeoutSeconds + 8));
            Assert.Equal("RUN_ERROR", end.Type);
            Assert.Equal("node_lost", end.Str("code"));
        }
        finally
        {
            await SignalAsync(p, "CONT");
        }

        await w.WaitForAsync(e => e.Name == "presence.leave" && e.MemberId == "agent:" + runId, "P's run to complete after the pause", TimeSpan.FromSeconds(30));
        var run = ScaleoutKit.WithoutPresence(w.Events);
        var ended = run.First(e => e.IsRunEnd && e.RunId == runId);
        var messageId = ScaleoutKit.AssistantMessageId(run);
        var afterEnd = run.Where(e => e.Seq > ended.Seq && (e.RunId == runId || e.MessageId == messageId)).ToList();
        Assert.True(afterEnd.Count == 0,
            $"the run was ended at {ended.Seq} ({ended.Json}) but P went on writing it:\n{string.Join("\n", afterEnd.Take(3))}\n... {afterEnd.Count} events in all, the last:\n{afterEnd.LastOrDefault()}");
        Assert.Single(run, e => e.IsRunEnd && e.RunId == runId);
        Assert.Single(run, e => e.Type == "TEXT_MESSAGE_END" && e.MessageId == messageId);
    }

    private static async Task SignalAsync(GatewayProcess node, string signal)
    {
        using var kill = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("/bin/sh",
            ["-c", $"kill -{signal} {node.ProcessId.ToString(CultureInfo.InvariantCulture)}"])) ?? throw new InvalidOperationException("/bin/sh did not start");
        await kill.WaitForExitAsync();
        Assert.Equal(0, kill.ExitCode);
    }
}

/// <summary>One node death with a watcher on the dying node, repeated; shared by the single-Redis and the cluster tests.</summary>
internal static class NodeDeathDrill
{
    /// <summary>How many doomed nodes start ahead of the drill that needs them.</summary>
    private const int Ahead = 2;

    /// <summary>How long a drill waits for anything: generous, since the suite runs test classes in parallel on two cores.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>A prompt the simulated model answers with 60 to 100 words.</summary>
    public const string Prompt = "Tell me about streaming through a gateway";

    /// <summary>
    /// Runs <paramref name="repetitions"/> drills against <paramref name="survivor"/>, each with a fresh doomed node. The
    /// next doomed node starts while the current drill runs, so a restart costs no time. Returns one message per failed
    /// repetition (the repetition number, the kill point and what went wrong); an infrastructure failure throws.
    /// </summary>
    public static async Task<List<string>> RepeatAsync(int repetitions, GatewayProcess survivor, Func<int, Task<GatewayProcess>> startDoomed,
        Func<GatewayProcess, GatewayProcess, int, Random, Task<DrillResult>> drill, ITestOutputHelper output)
    {
        var failures = new List<string>();
        var midRun = 0;
        // Starting a node costs about two seconds of CPU: keep the next ones starting while a drill runs.
        var starting = new Queue<Task<GatewayProcess>>();
        var started = 0;
        void StartNext()
        {
            if (started < repetitions)
            {
                started++;
                starting.Enqueue(startDoomed(started));
            }
        }

        for (var i = 0; i < Ahead; i++)
        {
            StartNext();
        }

        try
        {
            for (var rep = 1; rep <= repetitions; rep++)
            {
                var doomed = await starting.Dequeue();
                StartNext();
                var seed = Random.Shared.Next();
                var watch = System.Diagnostics.Stopwatch.StartNew();
                try
                {
                    var result = await drill(doomed, survivor, rep, new Random(seed));
                    midRun += result.KilledMidRun ? 1 : 0;
                    output.WriteLine($"repetition {rep} ({watch.ElapsedMilliseconds} ms): {result.Summary}");
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    failures.Add($"repetition {rep} (seed {seed}): {ex.GetType().Name}: {ex.Message}\n--- doomed node output ---\n{Tail(doomed.Output)}");
                    output.WriteLine($"repetition {rep} ({watch.ElapsedMilliseconds} ms): FAILED");
                }
                finally
                {
                    await doomed.DisposeAsync();
                }
            }
        }
        finally
        {
            while (starting.TryDequeue(out var pending))
            {
                try
                {
                    await (await pending).DisposeAsync();
                }
                catch (Exception ex) when (ex is InvalidOperationException or TimeoutException)
                {
                    // It did not start; nothing to clean up.
                }
            }
        }

        if (failures.Count > 0)
        {
            failures.Insert(0, $"{failures.Count} of {repetitions} repetitions failed");
            failures.Add("--- survivor output ---\n" + Tail(survivor.Output));
        }
        else if (midRun < (repetitions + 1) / 2)
        {
            failures.Add($"only {midRun} of {repetitions} kills came before the run ended: the drill did not test deaths mid-run");
        }

        return failures;
    }

    /// <summary>
    /// W1 watches on <paramref name="doomed"/>, W2 on <paramref name="survivor"/>; a run starts on the survivor (or on the
    /// doomed node when <paramref name="runOnDoomed"/>). After W1 saw a random number of the run's words the doomed node is
    /// SIGKILLed; W1 reconnects to the survivor with <c>Last-Event-ID</c> = the last position it saw. W1 must get a
    /// replay (no snapshot) starting right after that position, and its whole history must be the same events, byte for
    /// byte, as W2's: no gap, no duplicate, the same run text and the same end. A run on the dead node ends with
    /// <c>RUN_ERROR</c> <c>node_lost</c> (written by the survivor once the dead node's liveness lapsed).
    /// </summary>
    public static async Task<DrillResult> ResumeAfterKillAsync(GatewayProcess doomed, GatewayProcess survivor, bool runOnDoomed, Random random, bool reconnectAfterEnd,
        int maxWordsBeforeKill = 30)
    {
        var session = ScaleoutKit.NewSessionId();
        var killAfter = random.Next(1, maxWordsBeforeKill + 1);
        var context = $"session {session}, kill after {killAfter} words, run on {(runOnDoomed ? "the doomed node" : "the survivor")}";
        using var toDoomed = doomed.Client();
        using var toSurvivor = survivor.Client();
        using var w1 = await ScaleoutKit.WatchAsync(toDoomed, session, clientId: "w1", name: "W1@doomed");
        using var w2 = await ScaleoutKit.WatchAsync(toSurvivor, session, clientId: "w2", name: "W2@survivor");
        var runId = await ScaleoutKit.StartRunAsync(runOnDoomed ? toDoomed : toSurvivor, session, Prompt);
        var started = await w1.WaitForAsync(e => e.Type == "RUN_STARTED" && e.RunId == runId, "RUN_STARTED on W1", Patience);
        bool Word(WatchedEvent e) => e.Type == "TEXT_MESSAGE_CONTENT" && e.Seq > started.Seq;
        var deadline = DateTime.UtcNow + Patience;
        while (w1.Events is var seen && seen.Count(Word) < killAfter && !seen.Any(e => e.IsRunEnd))
        {
            Assert.True(!w1.Ended && DateTime.UtcNow < deadline, $"{context}: W1 did not see {killAfter} words:\n{string.Join("\n", seen)}");
            await Task.Delay(5);
        }

        // On a loaded machine the test can look too late: the run may have ended already. That is still a resume to
        // check, but not a death mid-run; the caller counts those.
        var wordsBeforeKill = w1.Events.Count(Word);
        var killedMidRun = !w1.Events.Any(e => e.IsRunEnd);
        doomed.Kill();
        await w1.WaitForEndAsync(Patience);
        var before = w1.Events;
        var last = before[^1].Id;
        if (reconnectAfterEnd)
        {
            await w2.WaitForRunEndAsync(runId, Patience);
        }

        using var resumed = await ScaleoutKit.WatchAsync(toSurvivor, session, lastEventId: last, clientId: "w1", name: "W1@survivor");
        var end2 = await w2.WaitForRunEndAsync(runId, Patience);
        if (last < end2.Seq)
        {
            await resumed.WaitForSeqAsync(end2.Seq, Patience);
        }

        var after = resumed.Events.TakeWhile(e => e.Seq <= end2.Seq).ToList();
        var history = before.Concat(after).ToList();
        var dump = $"{context}; W1 before the kill:\n{string.Join("\n", before)}\nW1 resumed after {last}:\n{string.Join("\n", resumed.Events)}\nW2:\n{string.Join("\n", w2.Events)}";

        // Resumed, not caught up: the first event after the reconnect is the one right after the last position seen.
        Assert.True(!resumed.Events.Any(e => e.Type == "MESSAGES_SNAPSHOT") && (last >= end2.Seq || (after.Count > 0 && after[0].Seq == last + 1)),
            $"{context}: the resume after {last} did not start with position {last + 1}:\n{dump}");
        var end1 = history.First(e => e.IsRunEnd && e.RunId == runId);
        Assert.DoesNotContain(history, e => e.IsGap);
        ScaleoutKit.AssertNoGapNoDuplicate(history, label: context);

        // The same events at the same positions as the watcher that never moved, presence included.
        var w2BySeq = ScaleoutKit.WithoutSnapshots(w2.Events).ToDictionary(e => e.Seq, e => e.Json);
        foreach (var e in ScaleoutKit.WithoutSnapshots(history).Where(e => e.Seq > (w2.SnapshotHead ?? 0)))
        {
            Assert.True(w2BySeq.TryGetValue(e.Seq, out var json) && json == e.Json,
                $"{context}: W1's event at {e.Seq} is not W2's:\n  W1: {e.Json}\n  W2: {(json ?? "(none)")}\n{dump}");
        }

        Assert.Equal(end2.Seq, end1.Seq);
        Assert.Equal(end2.Json, end1.Json);
        var text = ScaleoutKit.RunText(history, runId);
        Assert.True(text.Length > 0 && text == ScaleoutKit.RunText(w2.Events, runId), $"{context}: W1's text differs from W2's:\n{dump}");
        if (runOnDoomed && killedMidRun)
        {
            Assert.True(end1.Type == "RUN_ERROR" && end1.Str("code") == "node_lost", $"{context}: the orphaned run did not end with node_lost: {end1.Json}\n{dump}");
            Assert.Contains(history, e => e.Type == "TEXT_MESSAGE_END" && e.Seq < end1.Seq && e.Seq > last);
        }
        else
        {
            Assert.True(end1.Type == "RUN_FINISHED" && end1.OutcomeType == "success", $"{context}: the run did not finish: {end1.Json}\n{dump}");
        }

        return new DrillResult(killedMidRun,
            $"{context}: {wordsBeforeKill} words before the kill{(killedMidRun ? "" : " (the run had ended)")}, resumed after {last}, ended at {end1.Seq}");
    }

    internal sealed record DrillResult(bool KilledMidRun, string Summary);

    private static string Tail(string output, int lines = 30) => string.Join('\n', output.Split('\n').TakeLast(lines));
}
