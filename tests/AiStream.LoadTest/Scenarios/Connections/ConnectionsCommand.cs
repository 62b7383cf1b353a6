using System.ComponentModel;
using System.Globalization;
using AiStream.LoadTest.Cli;
using AiStream.LoadTest.Clients;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;
using AiStream.LoadTest.Scenarios.Fanout;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Scenarios.Connections;

/// <summary>Options of <c>connections</c>.</summary>
public sealed class ConnectionsSettings : ScenarioSettings
{
    [CommandOption("--connections <LIST>")]
    [Description("Idle connections per cell, comma-separated. Default 1000,5000,10000 (smoke: 20).")]
    public string? Connections { get; set; }

    [CommandOption("--transports <LIST>")]
    [Description("sse and signalr, comma-separated. Default both.")]
    public string? Transports { get; set; }

    [CommandOption("--settle <SECONDS>")]
    [Description("Wait before each memory reading. Default 5 (smoke: 0.5).")]
    public double? Settle { get; set; }

    public override Spectre.Console.ValidationResult Validate()
    {
        var list = ValidateList(Connections, "--connections", 1, 100_000);
        if (!list.Successful)
        {
            return list;
        }

        if (Transports is not null && Transports.Split(',', StringSplitOptions.TrimEntries).Any(t => t is not ("sse" or "signalr")))
        {
            return Spectre.Console.ValidationResult.Error("--transports takes sse and signalr.");
        }

        return Settle is < 0 or > 300 ? Spectre.Console.ValidationResult.Error("--settle must be between 0 and 300 seconds.") : base.Validate();
    }
}

/// <summary>
/// <c>connections</c>: the gateway's resident memory per idle watcher. Each cell starts a fresh gateway, warms the
/// path up with one connection, reads VmRSS, opens N watchers of one session (SSE watches, or SignalR connections
/// that each joined), waits, and reads VmRSS again; before each reading it induces a full GC in the gateway through
/// the runtime's diagnostics port (<see cref="FullGc"/>).
/// </summary>
public sealed class ConnectionsCommand : ScenarioCommand<ConnectionsSettings>
{
    protected override string Name => "connections";

    internal override IReadOnlyList<Column> Columns { get; } =
    [
        new("target", "target", IsLabel: true),
        new("transport", "transport", IsLabel: true),
        new("connections", "connections", IsLabel: true),
        new("connected", "connected", "0"),
        new("rssBeforeMiB", "RSS before MiB", "0.0"),
        new("rssAfterMiB", "RSS after MiB", "0.0"),
        new("bytesPerConnection", "bytes/connection", "0"),
        new("gatewayOpenFiles", "gateway fds", "0"),
        new("connectSeconds", "connect s", "0.0"),
    ];

    internal override IReadOnlyList<ChartSpec> Charts { get; } =
    [
        new("bytes-per-connection.png", "bytesPerConnection", "Gateway memory per idle connection (RSS delta / N)", "bytes"),
    ];

    internal override async Task RunAsync(ConnectionsSettings settings, ScenarioResult result, CancellationToken cancellationToken)
    {
        var counts = ScenarioSettings.ParseList(settings.Connections ?? (settings.Smoke ? "20" : "1000,5000,10000"));
        var transports = (settings.Transports ?? "sse,signalr").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var settle = TimeSpan.FromSeconds(settings.Settle ?? (settings.Smoke ? 0.5 : 5));
        result.Settings["connections"] = string.Join(',', counts);
        result.Settings["settleSeconds"] = settle.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        result.Notes.Add("memory = VmRSS from /proc/<pid>/status after the settle period and a full blocking GC induced through the gateway's diagnostics port (EventPipe, GCHeapCollect), before and after connecting; fullGcBeforeReadings 0 means the port was unavailable and the reading includes heap headroom");
        result.Notes.Add("each cell runs on a fresh gateway, warmed up with one connection of the transport before the first reading");
        if (settings.Url is not null)
        {
            result.Notes.Add(settings.GatewayPid is null ? "with --url and no --gateway-pid, memory cannot be read" : "with --url the gateway is shared by every cell, so readings carry over");
        }

        var auth = LoadAuth.From(settings, result);
        using var http = SseWatcher.CreateClient(auth);
        foreach (var transport in transports)
        {
            foreach (var count in counts)
            {
                await using var gateway = settings.Url is null ? await GatewayProcess.StartAsync(GatewayProcess.Locate(settings.GatewayDll), auth.ServerSettings(), waitUntilReady: !settings.Smoke) : null;
                var baseAddress = gateway?.BaseAddress ?? new Uri(settings.Url!.TrimEnd('/') + "/");
                var pid = gateway?.ProcessId ?? settings.GatewayPid;
                if (pid is int p && !result.Settings.ContainsKey("gatewayOpenFilesLimit"))
                {
                    result.Settings["gatewayOpenFilesLimit"] = ProcStats.OpenFilesLimit(p) ?? "unknown";
                    result.Notes.Add($"open-files limit: this tool {result.Settings["toolOpenFilesLimit"]} (raised to its hard limit with setrlimit), the gateway {result.Settings["gatewayOpenFilesLimit"]} (from /proc/{p}/limits; inherited from the tool when the tool starts it)");
                }

                var sessionId = FanoutRunner.NewSessionId("idle");
                var after = await FanoutRunner.StartMessageAsync(http, baseAddress, sessionId, cancellationToken);
                Watcher Create() => FanoutRunner.NewWatcher(transport, http, auth, baseAddress, sessionId, after, "all", 1);

                var warm = Create();
                await warm.ConnectAsync(cancellationToken);
                await warm.DisposeAsync();
                await Task.Delay(settle, cancellationToken);
                var collected = pid is int g1 && await FullGc.CollectAsync(g1, cancellationToken);
                var before = pid is int p1 ? ProcStats.RssBytes(p1) : double.NaN;
                var watchers = Enumerable.Range(0, count).Select(_ => Create()).ToList();
                var clock = System.Diagnostics.Stopwatch.StartNew();
                try
                {
                    await FanoutCommand.ConnectAsync($"connections {transport} N={count}", watchers, cancellationToken);
                    var connectSeconds = clock.Elapsed.TotalSeconds;
                    await Task.Delay(settle, cancellationToken);
                    collected &= pid is int g2 && await FullGc.CollectAsync(g2, cancellationToken);
                    var afterRss = pid is int p2 ? ProcStats.RssBytes(p2) : double.NaN;
                    var failed = watchers.Count(w => w.Failure is not null);
                    var row = new ResultRow
                    {
                        Labels = new()
                        {
                            ["target"] = "aistream",
                            ["transport"] = transport,
                            ["connections"] = count.ToString(CultureInfo.InvariantCulture),
                        },
                    };
                    row["connected"] = count - failed;
                    row["rssBeforeMiB"] = before / (1024 * 1024);
                    row["rssAfterMiB"] = afterRss / (1024 * 1024);
                    row["bytesPerConnection"] = (afterRss - before) / count;
                    row["gatewayOpenFiles"] = pid is int p3 ? OpenFiles(p3) : double.NaN;
                    row["fullGcBeforeReadings"] = collected ? 1 : 0;
                    row["connectSeconds"] = connectSeconds;
                    result.Rows.Add(row);
                    if (failed > 0)
                    {
                        result.Problems.Add($"connections {transport} N={count}: {failed} connections ended while idle; first: {watchers.First(w => w.Failure is not null).Failure}");
                    }
                }
                finally
                {
                    await FanoutCommand.DisposeAllAsync(watchers);
                }
            }
        }
    }

    private static double OpenFiles(int pid)
    {
        try
        {
            return Directory.GetFileSystemEntries(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/fd")).Length;
        }
        catch (IOException)
        {
            return double.NaN;
        }
        catch (UnauthorizedAccessException)
        {
            return double.NaN;
        }
    }
}
