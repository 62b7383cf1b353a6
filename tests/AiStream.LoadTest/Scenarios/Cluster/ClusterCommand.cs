using System.ComponentModel;
using System.Globalization;
using System.Net;
using AiStream.LoadTest.Cli;
using AiStream.LoadTest.Clients;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;
using AiStream.LoadTest.Scenarios.Fanout;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Scenarios.Cluster;

/// <summary>Options of <c>cluster</c>.</summary>
public sealed class ClusterSettings : ScenarioSettings
{
    [CommandOption("--watchers <N>")]
    [Description("Watchers in each topology (split evenly over the nodes). Default 1000 (smoke: 4).")]
    public int? Watchers { get; set; }

    [CommandOption("--rates <LIST>")]
    [Description("Publish rates in events/s, comma-separated; 0 is as fast as one publisher goes. Default 50,0.")]
    public string? Rates { get; set; }

    [CommandOption("--transport <NAME>")]
    [Description("sse or signalr. Default sse.")]
    public string? Transport { get; set; }

    [CommandOption("--max-events <N>")]
    [Description("Most events per phase. Default 2000 (smoke: 100).")]
    public int? MaxEvents { get; set; }

    public override Spectre.Console.ValidationResult Validate()
    {
        var list = ValidateList(Rates, "--rates", 0, 1_000_000);
        return !list.Successful ? list
            : Watchers is < 2 or > 100_000 ? Spectre.Console.ValidationResult.Error("--watchers must be between 2 and 100000.")
            : Transport is not (null or "sse" or "signalr") ? Spectre.Console.ValidationResult.Error("--transport is sse or signalr.")
            : MaxEvents is <= 0 or > 1_000_000 ? Spectre.Console.ValidationResult.Error("--max-events must be between 1 and 1000000.")
            : Url is not null ? Spectre.Console.ValidationResult.Error("cluster starts its own nodes and redis-server; --url is not supported.")
            : base.Validate();
    }
}

/// <summary>
/// <c>cluster</c>: the same fan-out on one in-memory node, on one node with Redis, and on two nodes sharing a
/// redis-server with the watchers split evenly and every event published to the first node: the second node's
/// watchers measure the cross-node path (node A's append script, SPUBLISH, node B's mirror, its watchers).
/// </summary>
public sealed class ClusterCommand : ScenarioCommand<ClusterSettings>
{
    protected override string Name => "cluster";

    internal override IReadOnlyList<Column> Columns { get; } =
    [
        new("topology", "topology", IsLabel: true),
        new("watchers", "watchers", IsLabel: true),
        new("rate", "rate", IsLabel: true),
        new("published", "published", "0"),
        new("deliveredPerSecond", "delivered/s", "0"),
        new("latencyP50Ms", "p50 ms", "0.00"),
        new("latencyP99Ms", "p99 ms", "0.00"),
        new("sameNodeP99Ms", "same-node p99", "0.00"),
        new("crossNodeP50Ms", "cross-node p50", "0.00"),
        new("crossNodeP99Ms", "cross-node p99", "0.00"),
        new("lost", "lost", "0"),
        new("duplicated", "dup", "0"),
        new("gatewayCpuMicrosPerEvent", "gateways CPU µs/event", "0.00"),
        new("redisCpuMicrosPerEvent", "Redis CPU µs/event", "0.000"),
        new("gatewayCpuCores", "gateways cores", "0.00"),
        new("redisCpuCores", "Redis cores", "0.00"),
        new("clientCpuCores", "tool cores", "0.00"),
        new("otherCpuCores", "other cores", "0.00"),
    ];

    internal override IReadOnlyList<ChartSpec> Charts { get; } =
    [
        new("latency-p99.png", "latencyP99Ms", "Publish-to-receive latency, p99, by topology", "ms"),
        new("redis-cpu-per-event.png", "redisCpuMicrosPerEvent", "redis-server CPU per delivered event", "µs"),
    ];

    internal override async Task RunAsync(ClusterSettings settings, ScenarioResult result, CancellationToken cancellationToken)
    {
        var count = settings.Watchers ?? (settings.Smoke ? 4 : 1000);
        var rates = ScenarioSettings.ParseList(settings.Rates ?? "50,0");
        var transport = settings.Transport ?? "sse";
        var duration = TimeSpan.FromSeconds(settings.Duration ?? (settings.Smoke ? 0.6 : 10));
        var maxEvents = settings.MaxEvents ?? (settings.Smoke ? 100 : 2000);
        var drain = TimeSpan.FromSeconds(settings.Smoke ? 20 : 30);
        result.Settings["watchers"] = count.ToString(CultureInfo.InvariantCulture);
        result.Settings["rates"] = string.Join(',', rates) + " (0 = one publisher, back to back)";
        result.Settings["transport"] = transport;
        result.Settings["durationSeconds"] = duration.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        result.Settings["maxEventsPerPhase"] = maxEvents.ToString(CultureInfo.InvariantCulture);
        if (RedisProcess.Find(out var why) is null)
        {
            result.Notes.Add(why);
            AnsiConsole.MarkupLineInterpolated($"[yellow]{why}[/]");
            return;
        }

        result.Notes.Add("every event is published to node A; in '2 nodes + redis' half the watchers are on node B (crossNode) and half on A (sameNode)");
        result.Notes.Add("gateway CPU = both nodes' utime+stime; Redis CPU = redis-server's, over the phase, per event delivered to all watchers");
        var assembly = GatewayProcess.Locate(settings.GatewayDll);
        var auth = LoadAuth.From(settings, result);
        using var http = SseWatcher.CreateClient(auth);
        using var publishHttp = SseWatcher.CreateClient(auth);

        {
            await using var single = await GatewayProcess.StartAsync(assembly, auth.ServerSettings(), waitUntilReady: !settings.Smoke);
            await MeasureAsync("1 node", [single], null, "sameNode");
        }

        await using var redis = await RedisProcess.StartAsync();
        var scaleout = auth.ServerSettings(new Dictionary<string, string> { ["ConnectionStrings:Redis"] = redis.ConnectionString });

        // The smoke run proves the cross-node path; one node on Redis is a full run's extra comparison.
        if (!settings.Smoke)
        {
            await using var node = await GatewayProcess.StartAsync(assembly, scaleout);
            await WaitReadyAsync(node.BaseAddress, cancellationToken);
            await MeasureAsync("1 node + redis", [node], redis, "sameNode");
        }

        {
            // Started side by side: on two cores each start is mostly waiting for the other's JIT anyway.
            var startA = GatewayProcess.StartAsync(assembly, scaleout, waitUntilReady: !settings.Smoke);
            var startB = GatewayProcess.StartAsync(assembly, scaleout, waitUntilReady: !settings.Smoke);
            await Task.WhenAll(startA, startB);
            await using var nodeA = await startA;
            await using var nodeB = await startB;
            if (!settings.Smoke)
            {
                await Task.WhenAll(WaitReadyAsync(nodeA.BaseAddress, cancellationToken), WaitReadyAsync(nodeB.BaseAddress, cancellationToken));
            }

            await MeasureAsync("2 nodes + redis", [nodeA, nodeB], redis, null);
        }

        async Task MeasureAsync(string topology, GatewayProcess[] nodes, RedisProcess? redisServer, string? onlyGroup)
        {
            var sessionId = FanoutRunner.NewSessionId("cluster");
            var publishTo = nodes[0].BaseAddress;
            var after = await FanoutRunner.StartMessageAsync(publishHttp, publishTo, sessionId, cancellationToken);
            var capacity = (rates.Length * maxEvents) + 1;
            var watchers = Enumerable.Range(0, count).Select(i =>
            {
                var node = nodes[i % nodes.Length];
                var group = onlyGroup ?? (node == nodes[0] ? "sameNode" : "crossNode");
                return FanoutRunner.NewWatcher(transport, http, auth, node.BaseAddress, sessionId, after, group, capacity);
            }).ToList();
            var probes = new List<CpuProbe> { new("gateway", () => nodes.Sum(n => ProcStats.CpuSeconds(n.ProcessId))) };
            if (redisServer is not null)
            {
                probes.Add(new("redis", () => ProcStats.CpuSeconds(redisServer.ProcessId)));
            }

            try
            {
                await FanoutCommand.ConnectAsync($"cluster {topology}: connecting {count} {transport} watchers", watchers, cancellationToken);
                var publish = FanoutRunner.GatewayPublisher(publishHttp, publishTo, sessionId);
                for (var r = 0; r < rates.Length; r++)
                {
                    var row = new ResultRow
                    {
                        Labels = new()
                        {
                            ["target"] = "aistream",
                            ["topology"] = topology,
                            ["transport"] = transport,
                            ["watchers"] = count.ToString(CultureInfo.InvariantCulture),
                            ["rate"] = FanoutCommand.RateLabel(rates[r]),
                        },
                    };
                    await FanoutRunner.RunPhaseAsync($"cluster {topology} N={count} rate={FanoutCommand.RateLabel(rates[r])}", publish, watchers,
                        r * maxEvents, rates[r], duration, maxEvents, drain, probes, row, result, cancellationToken);
                    result.Rows.Add(row);
                }
            }
            finally
            {
                await FanoutCommand.DisposeAllAsync(watchers);
            }
        }
    }

    /// <summary>Waits for <c>/readyz</c> (Redis answers, the tokenizer is loaded) so the first publish is not a 503.</summary>
    private static async Task WaitReadyAsync(Uri node, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = node, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var response = await http.GetAsync(new Uri("readyz", UriKind.Relative), cancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            await Task.Delay(100, cancellationToken);
        }

        throw new TimeoutException($"{node}readyz was not 200 within 30 s");
    }
}
