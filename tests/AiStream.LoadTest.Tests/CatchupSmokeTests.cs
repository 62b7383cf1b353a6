using static AiStream.LoadTest.Tests.LoadTool;

namespace AiStream.LoadTest.Tests;

/// <summary><c>catchup --smoke</c>: the catch-up snapshot is a handful of events and far fewer bytes than the replay.</summary>
public sealed class CatchupSmokeTests
{
    [Fact]
    public async Task CatchupSmoke_SnapshotVersusFullReplay_SnapshotSendsFewerBytesAndEvents()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "catchup", "--smoke");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Empty(run.Problems);
        var snapshot = Assert.Single(run.RowsWhere("mode", "snapshot"));
        var replay = Assert.Single(run.RowsWhere("mode", "replay"));
        Assert.True(Metric(snapshot, "bytesMean") < Metric(replay, "bytesMean"), run.Output);
        Assert.True(Metric(snapshot, "eventsReceivedMean") < 10, run.Output);
        Assert.True(Metric(replay, "eventsReceivedMean") >= Metric(replay, "logEvents"), run.Output);
        Assert.True(Metric(snapshot, "caughtUpP50Ms") > 0 && Metric(replay, "caughtUpP50Ms") > 0, run.Output);
        Assert.True(File.Exists(Path.Combine(folder, "catchup", "bytes.png")), run.Output);
    }
}
