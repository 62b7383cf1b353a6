using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.ExternalAgents;

/// <summary>
/// The external-agent samples (samples/external-agent: Node with only fetch, Python with only the standard library),
/// run as real processes against a real gateway process while a watcher reads the session: the trace arrives whole,
/// in order, with no gap; a replayed run logs nothing twice; a refused agent says why and exits non-zero.
/// </summary>
public sealed class ExternalAgentSampleTests
{
    /// <summary>The trace of "What is 17 * 23?": 24 characters of arguments in pieces of 8, five words of answer.</summary>
    private static readonly string[] Trace =
    [
        "RUN_STARTED", "STEP_STARTED", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_ARGS", "TOOL_CALL_ARGS", "TOOL_CALL_END",
        "STEP_FINISHED", "STEP_STARTED", "TOOL_CALL_RESULT", "STEP_FINISHED", "STATE_DELTA", "STEP_STARTED", "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED",
    ];

    public static TheoryData<string> Samples => new() { "node", "python" };

    [Theory]
    [MemberData(nameof(Samples))]
    public async Task TheSample_PublishesItsWholeTrace_WatchersSeeItInOrderWithNoGap_AndAReplayAddsNothing(string sample)
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?>());
        using var http = gateway.CreateClient();
        var session = "ext-" + Guid.NewGuid().ToString("N")[..10];
        var runId = "run-" + sample;
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var (code, output, errors) = await RunAsync(sample, gateway.BaseAddress, session, runId);
        Assert.True(code == 0, $"the {sample} agent exited {code}: {errors}\n{output}");
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        var trace = watcher.Seen.SkipWhile(e => e.Type != "RUN_STARTED").ToList();
        Assert.Equal(Trace, trace.Select(e => e.Type));
        Assert.Equal(Enumerable.Range((int)trace[0].Seq, trace.Count).Select(s => (long)s), trace.Select(e => e.Seq));
        Assert.Equal(runId, trace[0].RunId);
        Assert.Equal(["model:1", "model:1", "tool:calculate", "tool:calculate", "model:2", "model:2"],
            trace.Where(e => e.Type.StartsWith("STEP_", StringComparison.Ordinal)).Select(e => e.Str("stepName")));
        Assert.Equal("calculate", trace.Single(e => e.Type == "TOOL_CALL_START").Str("toolCallName"));
        Assert.Equal("""{"expression":"17 * 23"}""", string.Concat(trace.Where(e => e.Type == "TOOL_CALL_ARGS").Select(e => e.Str("delta"))));
        Assert.Equal("391", trace.Single(e => e.Type == "TOOL_CALL_RESULT").Str("content"));
        Assert.Equal("17 * 23 is 391.", string.Concat(trace.Where(e => e.Type == "TEXT_MESSAGE_CONTENT").Select(e => e.Str("delta"))));
        Assert.Equal("success", trace[^1].OutcomeType);
        // The agent printed the positions the gateway gave it.
        Assert.Contains($"RUN_FINISHED -> seq {trace[^1].Seq}", output, StringComparison.Ordinal);

        // Run again with the same run id, as a crashed agent restarted would: every publish is answered from its
        // Idempotency-Key and nothing is logged twice.
        var (again, replayOutput, replayErrors) = await RunAsync(sample, gateway.BaseAddress, session, runId);
        Assert.True(again == 0, replayErrors);
        Assert.Equal(Trace.Length, replayOutput.Split('\n').Count(l => l.EndsWith("(replayed)", StringComparison.Ordinal)));
        var info = await http.GetFromJsonAsync<JsonObject>($"api/sessions/{session}");
        Assert.Equal(trace[^1].Seq, info!["headSeq"]!.GetValue<long>());

        // A late joiner gets the agent's work: its tool call and result in the conversation, its note in the state.
        using var late = await SessionWatcher.OpenAsync(http, session);
        var snapshot = await late.ReadCountAsync(2);
        var messages = snapshot[0].Data["messages"]!.AsArray();
        Assert.Contains(messages, m => m!["role"]!.GetValue<string>() == "tool" && m["content"]!.GetValue<string>() == "391");
        Assert.Equal("391", snapshot[1].Data["snapshot"]!["lastAnswer"]!.GetValue<string>());
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public async Task RefusedByTheGateway_TheSampleSaysWhy_AndExitsNonZero(string sample)
    {
        await using var gateway = await GatewayProcess.StartAsync(Tokens.AuthOn());

        var (code, output, errors) = await RunAsync(sample, gateway.BaseAddress, "ext-refused", "run-refused");

        Assert.NotEqual(0, code);
        Assert.Contains("agent: 401", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("seq", output, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public async Task ARunThatCannotGoOn_EndsWithRunError_AndIsNoLongerInProgress(string sample)
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?>());
        using var http = gateway.CreateClient();
        var session = "ext-" + Guid.NewGuid().ToString("N")[..10];

        var (code, _, errors) = await RunAsync(sample, gateway.BaseAddress, session, "run-fails", question: "What is the meaning of life?");

        Assert.Equal(1, code);
        Assert.Contains("no arithmetic", errors, StringComparison.Ordinal);
        var info = await http.GetFromJsonAsync<JsonObject>($"api/sessions/{session}");
        Assert.Empty(info!["activeRuns"]!.AsArray()); // the RUN_ERROR named its run
    }

    private static async Task<(int Code, string Output, string Errors)> RunAsync(string sample, Uri gateway, string session, string runId,
        string question = "What is 17 * 23?")
    {
        var folder = Path.Combine(Fixtures.RepositoryRoot, "samples", "external-agent");
        var start = sample == "node"
            ? new ProcessStartInfo("node", [Path.Combine(folder, "node", "agent.mjs"), question])
            : new ProcessStartInfo("python3", [Path.Combine(folder, "python", "agent.py"), question]);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.Environment["AISTREAM_URL"] = gateway.ToString().TrimEnd('/');
        start.Environment["AISTREAM_SESSION"] = session;
        start.Environment["AISTREAM_RUN_ID"] = runId;
        start.Environment["AISTREAM_DELAY_MS"] = "0";
        using var process = Process.Start(start)!;
        ChildProcesses.Track(process);
        try
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, await output, await errors);
        }
        finally
        {
            ChildProcesses.KillQuietly(process);
            ChildProcesses.Untrack(process);
        }
    }
}
