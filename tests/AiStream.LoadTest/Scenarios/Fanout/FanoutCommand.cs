using System.ComponentModel;
using System.Globalization;
using AiStream.LoadTest.Cli;
using AiStream.LoadTest.Clients;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Scenarios.Fanout;

/// <summary>Options of <c>fanout</c>.</summary>
public sealed class FanoutSettings : ScenarioSettings
{
    [CommandOption("--watchers <LIST>")]
    [Description("Watchers per cell, comma-separated. Default 100,1000,5000 (smoke: 5).")]
    public string? Watchers { get; set; }

    [CommandOption("--rates <LIST>")]
    [Description("Publish rates in events/s, comma-separated; 0 is as fast as one publisher goes. Default 50,0.")]
    public string? Rates { get; set; }

    [CommandOption("--transports <LIST>")]
    [Description("sse, signalr and nchan, comma-separated. Default all three (nchan only where installed).")]
    public string? Transports { get; set; }

    [CommandOption("--max-events <N>")]
    [Description("Most events per phase. Default 2000 (smoke: 100): below SubscriberHardLimit (4096), so a slow watcher is coalesced, never dropped.")]
    public int? MaxEvents { get; set; }

    public override Spectre.Console.ValidationResult Validate()
    {
        var list = ValidateList(Watchers, "--watchers", 1, 100_000);
        if (!list.Successful)
        {
            return list;
        }

        list = ValidateList(Rates, "--rates", 0, 1_000_000);
        if (!list.Successful)
        {
            return list;
        }

        if (Transports is not null && Transports.Split(',', StringSplitOptions.TrimEntries).Any(t => t is not ("sse" or "signalr" or "nchan")))
        {
            return Spectre.Console.ValidationResult.Error("--transports takes sse, signalr and nchan.");
        }

        return MaxEvents is <= 0 or > 1_000_000 ? Spectre.Console.ValidationResult.Error("--max-events must be between 1 and 1000000.") : base.Validate();
    }
}

/// <summary>
/// <c>fanout</c>: one session, N watchers, one publisher of token-sized <c>TEXT_MESSAGE_CONTENT</c> events; latency
/// from just before the publish to the watcher's receipt, every event accounted for by index.
/// </summary>
public sealed class FanoutCommand : ScenarioCommand<FanoutSettings>
{
    protected override string Name => "fanout";

    internal override IReadOnlyList<Column> Columns { get; } = FanoutColumns("serverCpuMicrosPerEvent");

    internal override IReadOnlyList<ChartSpec> Charts { get; } =
    [
        new("latency-p99.png", "latencyP99Ms", "Publish-to-receive latency, p99", "ms"),
        new("delivered-per-second.png", "deliveredPerSecond", "Delivered events per second", "events/s"),
    ];

    internal static Column[] FanoutColumns(string cpuMetric) =>
    [
        new("target", "target", IsLabel: true),
        new("transport", "transport", IsLabel: true),
        new("watchers", "watchers", IsLabel: true),
        new("rate", "rate", IsLabel: true),
        new("published", "published", "0"),
        new("publishedPerSecond", "pub/s", "0"),
        new("deliveredPerSecond", "delivered/s", "0"),
        new("latencyP50Ms", "p50 ms", "0.00"),
        new("latencyP99Ms", "p99 ms", "0.00"),
        new("latencyMaxMs", "max ms", "0.0"),
        new("lost", "lost", "0"),
        new("duplicated", "dup", "0"),
        new(cpuMetric, "server CPU µs/event", "0.00"),
        new("serverCpuCores", "server cores", "0.00"),
        new("clientCpuCores", "tool cores", "0.00"),
        new("otherCpuCores", "other cores", "0.00"),
    ];

    internal override async Task RunAsync(FanoutSettings settings, ScenarioResult result, CancellationToken cancellationToken)
    {
        var counts = ScenarioSettings.ParseList(settings.Watchers ?? (settings.Smoke ? "5" : "100,1000,5000"));
        var rates = ScenarioSettings.ParseList(settings.Rates ?? "50,0");
        var transports = (settings.Transports ?? "sse,signalr,nchan").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var duration = TimeSpan.FromSeconds(settings.Duration ?? (settings.Smoke ? 0.6 : 10));
        var maxEvents = settings.MaxEvents ?? (settings.Smoke ? 100 : 2000);
        var drain = TimeSpan.FromSeconds(settings.Smoke ? 20 : 30);
        result.Settings["watchers"] = string.Join(',', counts);
        result.Settings["rates"] = string.Join(',', rates) + " (0 = one publisher, back to back)";
        result.Settings["durationSeconds"] = duration.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        result.Settings["maxEventsPerPhase"] = maxEvents.ToString(CultureInfo.InvariantCulture);
        result.Notes.Add("latency: from just before the publish POST to the watcher's receipt, in this process (one clock); the watchers share the machine's cores with the gateway");
        result.Notes.Add("CPU per event: the server's utime+stime over the phase / events delivered to all watchers (a merged delta counts every event in it)");
        result.Notes.Add("all watchers are one presence member (clientId=loadtest), so connecting them adds no presence events to the log");

        var auth = LoadAuth.From(settings, result);
        using var http = SseWatcher.CreateClient(auth);
        using var publishHttp = SseWatcher.CreateClient(auth);
        await using var gateway = settings.Url is null ? await GatewayProcess.StartAsync(GatewayProcess.Locate(settings.GatewayDll), auth.ServerSettings(), waitUntilReady: !settings.Smoke) : null;
        var baseAddress = gateway?.BaseAddress ?? new Uri(settings.Url!.TrimEnd('/') + "/");
        var pid = gateway?.ProcessId ?? settings.GatewayPid;
        if (pid is int p)
        {
            result.Settings["gatewayOpenFilesLimit"] = ProcStats.OpenFilesLimit(p) ?? "unknown";
        }

        var gatewayProbes = pid is int gp ? new[] { new CpuProbe("server", () => ProcStats.CpuSeconds(gp)) } : [];
        if (!settings.Smoke && transports.Any(t => t != "nchan"))
        {
            // The runtime compiles hot paths in tiers over the first seconds of load; measure the steady state.
            await WarmUpAsync(http, publishHttp, auth, baseAddress, transports, rates[0], cancellationToken);
            result.Notes.Add("before the measured phases, each gateway transport ran a 5 s warm-up (100 watchers of another session at the first rate), not counted");
        }

        foreach (var transport in transports)
        {
            if (transport == "nchan")
            {
                await RunNchanAsync(counts, rates, duration, maxEvents, drain, http, publishHttp, result, cancellationToken);
                continue;
            }

            foreach (var count in counts)
            {
                var sessionId = FanoutRunner.NewSessionId("fanout");
                var after = await FanoutRunner.StartMessageAsync(publishHttp, baseAddress, sessionId, cancellationToken);
                var capacity = (rates.Length * maxEvents) + 1;
                var watchers = Enumerable.Range(0, count).Select(_ => FanoutRunner.NewWatcher(transport, http, auth, baseAddress, sessionId, after, "all", capacity)).ToList();
                try
                {
                    await ConnectAsync($"fanout {transport} connecting {count} watchers", watchers, cancellationToken);
                    var publish = FanoutRunner.GatewayPublisher(publishHttp, baseAddress, sessionId);
                    for (var r = 0; r < rates.Length; r++)
                    {
                        var row = NewRow("aistream", transport, count, rates[r]);
                        await FanoutRunner.RunPhaseAsync($"fanout {transport} N={count} rate={RateLabel(rates[r])}", publish, watchers, r * maxEvents,
                            rates[r], duration, maxEvents, drain, gatewayProbes, row, result, cancellationToken);
                        result.Rows.Add(row);
                    }
                }
                finally
                {
                    await DisposeAllAsync(watchers);
                }
            }
        }
    }

    private static async Task WarmUpAsync(HttpMessageInvoker http, HttpMessageInvoker publishHttp, LoadAuth auth, Uri baseAddress, string[] transports, int rate,
        CancellationToken cancellationToken)
    {
        const int Watchers = 100;
        var duration = TimeSpan.FromSeconds(5);
        var maxEvents = 1_000;
        foreach (var transport in transports.Where(t => t != "nchan"))
        {
            var sessionId = FanoutRunner.NewSessionId("warmup");
            var after = await FanoutRunner.StartMessageAsync(publishHttp, baseAddress, sessionId, cancellationToken);
            var watchers = Enumerable.Range(0, Watchers).Select(_ => FanoutRunner.NewWatcher(transport, http, auth, baseAddress, sessionId, after, "all", maxEvents + 1)).ToList();
            try
            {
                await ConnectAsync($"fanout {transport} warm-up connecting", watchers, cancellationToken);
                var discarded = new ScenarioResult { Scenario = "warmup", Smoke = false, StartedAt = DateTimeOffset.UtcNow };
                await FanoutRunner.RunPhaseAsync($"fanout {transport} warm-up", FanoutRunner.GatewayPublisher(publishHttp, baseAddress, sessionId), watchers, 0,
                    rate == 0 ? 200 : rate, duration, maxEvents, TimeSpan.FromSeconds(10), [], NewRow("warmup", transport, Watchers, rate), discarded, cancellationToken);
            }
            finally
            {
                await DisposeAllAsync(watchers);
            }
        }
    }

    /// <summary>
    /// Nchan can answer a subscriber's request (so it counts as connected) before the channel delivers to it; seen here
    /// as a whole first phase lost. Publish unmarked probes (watchers count them as no event) until every subscriber
    /// has taken one, so the measured phases start with all of them subscribed.
    /// </summary>
    private static async Task WaitUntilNchanDeliversAsync(PublishAsync publish, IReadOnlyList<Watcher> watchers, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            var before = watchers.Select(w => w.Messages).ToArray();
            await publish("probe", cancellationToken);
            var wait = DateTime.UtcNow + TimeSpan.FromSeconds(1);
            while (DateTime.UtcNow < wait)
            {
                if (watchers.Select((w, i) => w.Messages > before[i]).All(got => got))
                {
                    return;
                }

                await Task.Delay(20, cancellationToken);
            }
        }
    }

    private static async Task RunNchanAsync(int[] counts, int[] rates, TimeSpan duration, int maxEvents, TimeSpan drain,
        HttpMessageInvoker http, HttpMessageInvoker publishHttp, ScenarioResult result, CancellationToken cancellationToken)
    {
        var module = NginxProcess.FindNchan(out var why);
        if (module is null)
        {
            result.Notes.Add(why);
            AnsiConsole.MarkupLineInterpolated($"[yellow]{why}[/]");
            return;
        }

        await using var nginx = await NginxProcess.StartNchanAsync(module);
        var probes = new[] { new CpuProbe("server", () => ProcStats.CpuSecondsWithChildren(nginx.ProcessId)) };
        result.Notes.Add("nchan rows: nginx + Nchan (EventSource subscribers, HTTP publisher, one channel), master and workers' CPU in the CPU column; Nchan messages carry no seq, so order is not checked there");
        foreach (var count in counts)
        {
            var channel = "lt" + Guid.NewGuid().ToString("N")[..12];
            var capacity = (rates.Length * maxEvents) + 1;
            var watchers = Enumerable.Range(0, count)
                .Select(_ => (Watcher)new SseWatcher(http, new Uri(nginx.BaseAddress, "sub/" + channel), "all", capacity, nchan: true)).ToList();
            try
            {
                await ConnectAsync($"fanout nchan connecting {count} subscribers", watchers, cancellationToken);
                var publish = FanoutRunner.NchanPublisher(publishHttp, nginx.BaseAddress, channel);
                await WaitUntilNchanDeliversAsync(publish, watchers, cancellationToken);
                for (var r = 0; r < rates.Length; r++)
                {
                    var row = NewRow("nchan", "sse", count, rates[r]);
                    await FanoutRunner.RunPhaseAsync($"fanout nchan N={count} rate={RateLabel(rates[r])}", publish, watchers, r * maxEvents,
                        rates[r], duration, maxEvents, drain, probes, row, result, cancellationToken);
                    result.Rows.Add(row);
                }
            }
            finally
            {
                await DisposeAllAsync(watchers);
            }
        }
    }

    internal static async Task ConnectAsync(string label, IReadOnlyList<Watcher> watchers, CancellationToken cancellationToken)
    {
        var connected = 0;
        await LiveStatus.RunAsync(label, () => string.Create(CultureInfo.InvariantCulture, $"{Volatile.Read(ref connected)} of {watchers.Count} connected"),
            () => FanoutRunner.ConnectAllAsync(watchers, 32, () => Interlocked.Increment(ref connected), cancellationToken));
    }

    internal static async Task DisposeAllAsync(IEnumerable<Watcher> watchers)
    {
        await Parallel.ForEachAsync(watchers, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (w, _) => await w.DisposeAsync());
    }

    internal static string RateLabel(int rate) => rate == 0 ? "max" : rate.ToString(CultureInfo.InvariantCulture) + "/s";

    private static ResultRow NewRow(string target, string transport, int watchers, int rate) => new()
    {
        Labels = new()
        {
            ["target"] = target,
            ["transport"] = transport,
            ["watchers"] = watchers.ToString(CultureInfo.InvariantCulture),
            ["rate"] = RateLabel(rate),
        },
    };
}
