using static AiStream.LoadTest.Tests.LoadTool;

namespace AiStream.LoadTest.Tests;

/// <summary><c>fanout --smoke</c>: SSE and SignalR watchers each get every published event exactly once, in order.</summary>
public sealed class FanoutSmokeTests
{
    [Fact]
    public async Task FanoutSmoke_SseAndSignalR_NoEventIsLostOrDuplicated()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "fanout", "--smoke");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Empty(run.Problems);
        var rows = run.RowsWhere("target", "aistream").ToList();
        Assert.Contains(rows, r => r.GetProperty("labels").GetProperty("transport").GetString() == "sse");
        Assert.Contains(rows, r => r.GetProperty("labels").GetProperty("transport").GetString() == "signalr");
        Assert.Equal(4, rows.Count);
        foreach (var row in run.Rows)
        {
            var published = Metric(row, "published");
            Assert.True(published > 0, row.ToString());
            Assert.Equal(published * Metric(row, "watchers"), Metric(row, "delivered"));
            Assert.Equal(0, Metric(row, "lost"));
            Assert.Equal(0, Metric(row, "duplicated"));
            Assert.Equal(0, Metric(row, "outOfOrder"));
            Assert.Equal(0, Metric(row, "disconnects"));
            Assert.True(Metric(row, "latencyP50Ms") > 0 && Metric(row, "latencyMaxMs") >= Metric(row, "latencyP99Ms"), row.ToString());
        }

        if (!run.Notes.Any(n => n.Contains("Nchan", StringComparison.Ordinal) && n.Contains("skipped", StringComparison.Ordinal)))
        {
            Assert.NotEmpty(run.RowsWhere("target", "nchan"));
        }
    }
}
