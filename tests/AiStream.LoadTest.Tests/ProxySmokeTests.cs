using static AiStream.LoadTest.Tests.LoadTool;

namespace AiStream.LoadTest.Tests;

/// <summary><c>proxy --smoke</c>: every stream, direct, through the gateway and through nginx, carried all 64 chunks.</summary>
public sealed class ProxySmokeTests
{
    [Fact]
    public async Task ProxySmoke_ThroughGatewayAndNginx_EveryStreamGetsAll64ChunksAndTheFiguresAreWritten()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "proxy", "--smoke");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Empty(run.Problems);
        var targets = run.Rows.Select(r => r.GetProperty("labels").GetProperty("target").GetString()).Distinct().ToList();
        Assert.Contains("direct", targets);
        Assert.Contains("aistream", targets);
        if (!run.Notes.Any(n => n.Contains("nginx is not installed", StringComparison.Ordinal)))
        {
            Assert.Contains("nginx", targets);
        }

        foreach (var row in run.Rows)
        {
            Assert.True(Metric(row, "streams") > 0, row.ToString());
            Assert.Equal(64, Metric(row, "minChunksPerStream"));
            Assert.Equal(64, Metric(row, "maxChunksPerStream"));
            Assert.Equal(0, Metric(row, "badStreams"));
            Assert.Equal(0, Metric(row, "errors"));
            Assert.True(Metric(row, "ttftP50Ms") > 0 && Metric(row, "ttftP99Ms") >= Metric(row, "ttftP50Ms"), row.ToString());
            Assert.True(Metric(row, "totalP50Ms") >= Metric(row, "ttftP50Ms"), row.ToString());
            Assert.False(double.IsNaN(Metric(row, "addedTtftP99Ms")), row.ToString());
        }

        foreach (var row in run.RowsWhere("target", "aistream"))
        {
            Assert.True(Metric(row, "cpuMicrosPerToken") > 0, row.ToString());
        }

        Assert.True(File.Exists(Path.Combine(folder, "proxy", "added-ttft-p99.png")), run.Output);
    }

    [Fact]
    public async Task Proxy_WithANonLoopbackUrl_IsRefusedBeforeSendingAnything()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "proxy", "--smoke", "--url", "http://192.0.2.1:8080");

        Assert.NotEqual(0, run.ExitCode);
        Assert.Null(run.Results);
        Assert.Contains("loopback", run.Output, StringComparison.OrdinalIgnoreCase);
    }
}
