using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Scaleout;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace AiStream.IntegrationTests.Deploy;

/// <summary>
/// Real nginx running <c>deploy/nginx/nginx.conf</c> in front of two gateway nodes sharing one Redis (as
/// docker-compose.yml deploys them), shared by the SSE and SignalR tests of <see cref="NginxScaleoutTests"/>.
/// </summary>
public sealed class NginxScaleoutFixture : IAsyncLifetime
{
    internal RedisServer Redis { get; private set; } = null!;

    internal GatewayProcess[] Nodes { get; private set; } = [];

    internal NginxProxy Nginx { get; private set; } = null!;

    /// <summary>The node nginx sends this machine's clients to (<c>hash $remote_addr consistent</c>: every loopback client).</summary>
    internal GatewayProcess ViaNginx { get; private set; } = null!;

    /// <summary>The other node, which no client through nginx reaches while <see cref="ViaNginx"/> is up.</summary>
    internal GatewayProcess Other { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Redis = await RedisServer.StartAsync();
        Nodes = await ScaleoutKit.StartNodesAsync(Redis.ConnectionString, ["A", "B"], NodeDeathTests.Steady);
        Nginx = await NginxProxy.StartAsync(Nodes.Select(n => n.BaseAddress).ToList());
        ViaNginx = await NginxScaleoutTests.NodeBehindNginxAsync(Redis, Nginx, Nodes);
        Other = Nodes.Single(n => n != ViaNginx);
    }

    public async Task DisposeAsync()
    {
        if (Nginx is not null)
        {
            await Nginx.DisposeAsync();
        }

        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }

        if (Redis is not null)
        {
            await Redis.DisposeAsync();
        }
    }
}

/// <summary>
/// Two gateway nodes behind real nginx: a client through nginx sees runs started on the node nginx does not send it to,
/// over SSE (unbuffered) and over both SignalR transports, and when its node dies it resumes through nginx on the other.
/// </summary>
public sealed class NginxScaleoutTests(NginxScaleoutFixture fixture) : IClassFixture<NginxScaleoutFixture>
{
    private static readonly string[] NodeIds = ["A", "B"];

    /// <summary>
    /// Which node serves clients of <paramref name="nginx"/>: a watch through nginx makes exactly one node advertise
    /// the session's watchers in Redis (<c>aistream:{session}:w</c>, renewed by each node's maintenance).
    /// </summary>
    internal static async Task<GatewayProcess> NodeBehindNginxAsync(RedisServer redis, NginxProxy nginx, IReadOnlyList<GatewayProcess> nodes)
    {
        var probe = "probe-" + Guid.NewGuid().ToString("N")[..8];
        using var http = Client(nginx.BaseAddress);
        using var watch = await ScaleoutKit.WatchAsync(http, probe, clientId: "probe", name: "probe via nginx");
        List<string> watching = [];
        await ScaleoutKit.WaitUntilAsync(async () =>
        {
            watching = ((List<object?>)RespReply.Parse(await redis.CommandAsync("ZRANGE", $"aistream:{{{probe}}}:w", "0", "-1"))!).Cast<string>().ToList();
            return watching.Count > 0;
        }, "a node to advertise the watch through nginx");
        // Redis knows a node by its configured id plus a process incarnation ("A.3f9c1d2e").
        var id = Assert.Single(watching).Split('.')[0];
        return nodes[Array.IndexOf(NodeIds, id)];
    }

    private static HttpClient Client(Uri baseAddress) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };

    [Fact]
    public async Task SseThroughNginx_SeesARunStartedOnTheOtherNode_EventByEvent_WithTheSamePositionsAsADirectWatcher()
    {
        var session = ScaleoutKit.NewSessionId();
        using var viaNginx = Client(fixture.Nginx.BaseAddress);
        using var direct = fixture.Other.Client();
        using var proxied = await ScaleoutKit.WatchAsync(viaNginx, session, clientId: "proxied", name: "via nginx");
        using var onOther = await ScaleoutKit.WatchAsync(direct, session, clientId: "direct", name: "direct");

        // Lockstep: each event published on the other node reaches the client through nginx before the next exists.
        for (var i = 0; i < 3; i++)
        {
            var seq = await ScaleoutKit.MarkAsync(direct, session, "lockstep." + i.ToString(CultureInfo.InvariantCulture));
            await proxied.WaitForSeqAsync(seq, TimeSpan.FromSeconds(5));
        }

        var runId = await ScaleoutKit.StartRunAsync(direct, session, NodeDeathDrill.Prompt);
        // Words arrive through nginx while the run is still writing, in many small steps rather than a few buffered ones.
        var started = await proxied.WaitForAsync(e => e.Type == "RUN_STARTED" && e.RunId == runId, "RUN_STARTED through nginx");
        var first = await proxied.WaitForAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Seq > started.Seq, "the run's first word through nginx");
        Assert.Contains(runId, ScaleoutKit.ActiveRuns(await ScaleoutKit.InfoAsync(direct, session)));
        var steps = new HashSet<int>();
        while (!proxied.Events.Any(e => e.IsRunEnd && e.RunId == runId))
        {
            Assert.False(proxied.Ended, "the watch through nginx ended");
            steps.Add(proxied.Events.Count(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Seq >= first.Seq));
            await Task.Delay(10);
        }

        Assert.True(steps.Count >= 5, $"the run's words arrived through nginx in {steps.Count} steps: [{string.Join(", ", steps.Order())}]");
        var end = await onOther.WaitForRunEndAsync(runId);
        AssertSameHistory(proxied.Events, onOther.Events, end.Seq, "via nginx vs direct");
        Assert.Equal("RUN_FINISHED", end.Type);
        Assert.Equal(ScaleoutKit.RunText(onOther.Events, runId), ScaleoutKit.RunText(proxied.Events, runId));
        Assert.NotEmpty(ScaleoutKit.RunText(proxied.Events, runId));
    }

    [Theory]
    [InlineData(HttpTransportType.WebSockets)]
    [InlineData(HttpTransportType.LongPolling)]
    public async Task HubThroughNginx_JoinsAndReceivesARunStartedOnTheOtherNode(HttpTransportType transport)
    {
        var session = ScaleoutKit.NewSessionId();
        using var direct = fixture.Other.Client();
        using var onOther = await ScaleoutKit.WatchAsync(direct, session, clientId: "direct", name: "direct");
        var received = Channel.CreateUnbounded<WatchedEvent>();
        await using var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(fixture.Nginx.BaseAddress, "hubs/sessions?clientId=hub-" + transport), options => options.Transports = transport)
            .Build();
        connection.On<string, JsonElement>("Event", (sid, e) =>
        {
            if (sid == session)
            {
                var json = e.GetRawText();
                received.Writer.TryWrite(new WatchedEvent(JsonNode.Parse(json)!["seq"]!.GetValue<long>(), json));
            }
        });
        await connection.StartAsync();

        var join = await connection.InvokeAsync<JsonElement>("Join", session, (long?)null);
        Assert.True(join.GetProperty("snapshot").GetBoolean());
        var runId = await ScaleoutKit.StartRunAsync(direct, session, "Explain proxies");
        var overHub = new List<WatchedEvent>();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            while (overHub.LastOrDefault() is not { IsRunEnd: true } last || last.RunId != runId)
            {
                overHub.Add(await received.Reader.ReadAsync(timeout.Token));
            }
        }

        var end = await onOther.WaitForRunEndAsync(runId);
        Assert.Equal("RUN_FINISHED", end.Type);
        AssertSameHistory(overHub, onOther.Events, end.Seq, $"hub ({transport}) via nginx vs direct SSE");
        Assert.Equal(ScaleoutKit.RunText(onOther.Events, runId), ScaleoutKit.RunText(overHub, runId));
        Assert.NotEmpty(ScaleoutKit.RunText(overHub, runId));
    }

    [Fact]
    public async Task NodeBehindNginxKilledMidRun_SseClientResumesThroughNginxOnTheOtherNode_NoGapNoDuplicate()
    {
        // Its own nodes: this test kills one, and nginx then skips it for fail_timeout.
        await using var redis = await RedisServer.StartAsync();
        var nodes = await ScaleoutKit.StartNodesAsync(redis.ConnectionString, NodeIds, NodeDeathTests.Steady);
        try
        {
            await using var nginx = await NginxProxy.StartAsync(nodes.Select(n => n.BaseAddress).ToList());
            var doomed = await NodeBehindNginxAsync(redis, nginx, nodes);
            var survivor = nodes.Single(n => n != doomed);
            var session = ScaleoutKit.NewSessionId();
            using var viaNginx = Client(nginx.BaseAddress);
            using var direct = survivor.Client();
            using var proxied = await ScaleoutKit.WatchAsync(viaNginx, session, clientId: "proxied", name: "via nginx");
            using var onSurvivor = await ScaleoutKit.WatchAsync(direct, session, clientId: "direct", name: "direct");
            var runId = await ScaleoutKit.StartRunAsync(direct, session, NodeDeathDrill.Prompt);
            var started = await proxied.WaitForAsync(e => e.Type == "RUN_STARTED" && e.RunId == runId, "RUN_STARTED through nginx");
            await proxied.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Seq > started.Seq, 10, "ten words through nginx");
            Assert.DoesNotContain(proxied.Events, e => e.IsRunEnd);

            doomed.Kill();
            await proxied.WaitForEndAsync();
            var before = proxied.Events;
            var last = before[^1].Id;
            using var resumed = await ScaleoutKit.WatchAsync(viaNginx, session, lastEventId: last, clientId: "proxied", name: "resumed via nginx");
            var end = await onSurvivor.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(15));
            var resumedEnd = await resumed.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(15));

            Assert.True(doomed.HasExited);
            Assert.Equal("RUN_FINISHED", end.Type);
            Assert.Equal(end.Json, resumedEnd.Json);
            Assert.NotEqual("MESSAGES_SNAPSHOT", resumed.Events[0].Type);
            Assert.Equal(last + 1, resumed.Events[0].Seq);
            var history = before.Concat(resumed.Events.TakeWhile(e => e.Seq <= resumedEnd.Seq)).ToList();
            AssertSameHistory(history, onSurvivor.Events, end.Seq, "via nginx across the failover vs direct");
            Assert.Equal(ScaleoutKit.RunText(onSurvivor.Events, runId), ScaleoutKit.RunText(history, runId));
            Assert.NotEmpty(ScaleoutKit.RunText(history, runId));
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// <paramref name="events"/> have no gap and no duplicate up to <paramref name="end"/>, and from where both watched on
    /// they are <paramref name="reference"/>'s events, at the same positions, byte for byte (presence included).
    /// </summary>
    private static void AssertSameHistory(List<WatchedEvent> events, List<WatchedEvent> reference, long end, string label)
    {
        var upToEnd = events.TakeWhile(e => e.Seq <= end).ToList();
        Assert.DoesNotContain(upToEnd, e => e.IsGap);
        ScaleoutKit.AssertNoGapNoDuplicate(upToEnd, label: label);
        var from = Math.Max(SnapshotHead(events), SnapshotHead(reference));
        var mine = ScaleoutKit.WithoutSnapshots(upToEnd).Where(e => e.Seq > from).Select(e => (e.Seq, e.Json)).ToList();
        var theirs = ScaleoutKit.WithoutSnapshots(reference).Where(e => e.Seq > from && e.Seq <= end).Select(e => (e.Seq, e.Json)).ToList();
        Assert.True(theirs.SequenceEqual(mine), $"{label}: the histories differ after {from}:\n--- mine ---\n{string.Join("\n", mine)}\n--- reference ---\n{string.Join("\n", theirs)}");
        Assert.Equal(end, mine[^1].Seq);
    }

    private static long SnapshotHead(List<WatchedEvent> events) => events.FirstOrDefault() is { Type: "MESSAGES_SNAPSHOT" } first ? first.Seq : 0;
}
