using static AiStream.LoadTest.Tests.LoadTool;

namespace AiStream.LoadTest.Tests;

/// <summary><c>cluster --smoke</c>: one node, then two nodes on Redis; the cross-node path loses nothing.</summary>
public sealed class ClusterSmokeTests
{
    [Fact]
    public async Task ClusterSmoke_TwoNodesOnRedis_CrossNodeWatchersGetEveryEventOnce()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "cluster", "--smoke");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Empty(run.Problems);
        if (run.Notes.Any(n => n.Contains("redis-server is not installed", StringComparison.Ordinal)))
        {
            Assert.Empty(run.Rows);
            return;
        }

        Assert.Equal(4, run.Rows.Count());
        foreach (var row in run.Rows)
        {
            Assert.Equal(Metric(row, "published") * Metric(row, "watchers"), Metric(row, "delivered"));
            Assert.Equal(0, Metric(row, "lost"));
            Assert.Equal(0, Metric(row, "duplicated"));
            Assert.Equal(0, Metric(row, "outOfOrder"));
        }

        foreach (var row in run.RowsWhere("topology", "2 nodes + redis"))
        {
            Assert.True(Metric(row, "crossNodeP50Ms") > 0 && Metric(row, "crossNodeP99Ms") >= Metric(row, "crossNodeP50Ms"), row.ToString());
            Assert.False(double.IsNaN(Metric(row, "redisCpuMicrosPerEvent")), row.ToString());
        }
    }
}
