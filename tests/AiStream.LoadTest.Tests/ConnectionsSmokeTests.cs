using static AiStream.LoadTest.Tests.LoadTool;

namespace AiStream.LoadTest.Tests;

/// <summary>
/// <c>connections --smoke</c>: idle SSE and SignalR watchers stay connected to the gateway and to its floor (with the
/// run's bearer token, which the floor checks), and each server's memory is read.
/// </summary>
public sealed class ConnectionsSmokeTests
{
    [Fact]
    public async Task ConnectionsSmoke_IdleSseAndSignalROnGatewayAndFloor_AllStayConnectedAndMemoryIsMeasured()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "connections", "--smoke");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Empty(run.Problems);
        Assert.Equal(["sse/aistream", "sse/floor", "signalr/aistream", "signalr/floor"],
            run.Rows.Select(r => r.GetProperty("labels").GetProperty("transport").GetString() + "/" + r.GetProperty("labels").GetProperty("target").GetString()));
        foreach (var row in run.Rows)
        {
            Assert.Equal(20, Metric(row, "connected"));
            Assert.True(Metric(row, "rssBeforeMiB") > 0 && Metric(row, "rssAfterMiB") > 0, row.ToString());
            Assert.False(double.IsNaN(Metric(row, "bytesPerConnection")), row.ToString());
            Assert.True(Metric(row, "gatewayOpenFiles") >= 20, row.ToString());
        }

        Assert.NotEqual("unknown", run.Root.GetProperty("settings").GetProperty("gatewayOpenFilesLimit").GetString());
    }

    [Fact]
    public async Task ConnectionsSmoke_AuthOff_FloorRunsBareAndStaysConnected()
    {
        var folder = NewResultsFolder();

        using var cleanup = new ResultsFolder(folder);
        var run = await RunAsync(folder, "connections", "--smoke", "--auth", "off", "--targets", "floor", "--transports", "sse");

        Assert.True(run.ExitCode == 0, run.Output);
        Assert.Empty(run.Problems);
        var row = Assert.Single(run.RowsWhere("target", "floor-bare"));
        Assert.Equal(20, Metric(row, "connected"));
        Assert.Equal("off", run.Root.GetProperty("settings").GetProperty("auth").GetString());
    }
}
