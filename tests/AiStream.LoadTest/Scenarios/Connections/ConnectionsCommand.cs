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

    [CommandOption("--targets <LIST>")]
    [Description("aistream (the gateway) and floor (tests/AiStream.LoadTest.Floor: the same SSE watch and hub behind JwtBearer, authorization, CORS and a rate limiter, nothing else), comma-separated. Default both.")]
    public string? Targets { get; set; }

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

        if (Targets is not null && (Targets.Split(',', StringSplitOptions.TrimEntries).Any(t => t is not ("aistream" or "floor")) || Targets.Trim().Length == 0))
        {
            return Spectre.Console.ValidationResult.Error("--targets takes aistream and floor.");
        }

        return Settle is < 0 or > 300 ? Spectre.Console.ValidationResult.Error("--settle must be between 0 and 300 seconds.") : base.Validate();
    }
}

/// <summary>
/// <c>connections</c>: the gateway's resident memory per idle watcher, next to its floor. Each cell starts a fresh
/// server (the gateway, then the floor), warms the path up with one connection, reads VmRSS, opens N watchers of one
/// session (SSE watches, or SignalR connections that each joined), waits, and reads VmRSS again; before each reading
/// it induces a full GC in the server through the runtime's diagnostics port (<see cref="FullGc"/>).
/// </summary>
public sealed class ConnectionsCommand : ScenarioCommand<ConnectionsSettings>
{
    private const string Gateway = "aistream";
    private const string Floor = "floor";

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
        new("xFloor", "x floor", "0.00"),
        new("gatewayOpenFiles", "server fds", "0"),
        new("connectSeconds", "connect s", "0.0"),
    ];

    internal override IReadOnlyList<ChartSpec> Charts { get; } =
    [
        new("bytes-per-connection.png", "bytesPerConnection", "Server memory per idle connection (RSS delta / N)", "bytes"),
    ];

    internal override async Task RunAsync(ConnectionsSettings settings, ScenarioResult result, CancellationToken cancellationToken)
    {
        var counts = ScenarioSettings.ParseList(settings.Connections ?? (settings.Smoke ? "20" : "1000,5000,10000"));
        var transports = (settings.Transports ?? "sse,signalr").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var targets = (settings.Targets ?? "aistream,floor").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var settle = TimeSpan.FromSeconds(settings.Settle ?? (settings.Smoke ? 0.5 : 5));
        result.Settings["connections"] = string.Join(',', counts);
        result.Settings["targets"] = string.Join(',', targets);
        result.Settings["settleSeconds"] = settle.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        result.Notes.Add("memory = VmRSS from /proc/<pid>/status after the settle period and a full blocking GC induced through the server's diagnostics port (EventPipe, GCHeapCollect), before and after connecting; fullGcBeforeReadings 0 means the port was unavailable and the reading includes heap headroom");
        result.Notes.Add("each cell runs on a fresh server process, warmed up with one connection of the transport before the first reading; in each cell the targets are measured one after the other");
        if (settings.Url is not null)
        {
            result.Notes.Add(settings.GatewayPid is null ? "with --url and no --gateway-pid, memory cannot be read" : "with --url the gateway is shared by every cell, so readings carry over");
        }

        var auth = LoadAuth.From(settings, result);
        if (targets.Contains(Floor))
        {
            result.Notes.Add(auth.SigningKey is null
                ? "floor-bare rows: tests/AiStream.LoadTest.Floor without a signing key, the same SSE watch and hub with no authentication, authorization, CORS or rate limiter (--auth off)"
                : "floor rows: tests/AiStream.LoadTest.Floor, the smallest ASP.NET Core app holding the same SSE watch and hub connection behind JwtBearer, authorization, CORS and a per-user concurrency limiter; same GC settings as the gateway; xFloor = the gateway's bytes/connection over the floor's in the same cell");
        }

        using var http = SseWatcher.CreateClient(auth);
        foreach (var transport in transports)
        {
            foreach (var count in counts)
            {
                var cell = new Dictionary<string, ResultRow>();
                foreach (var target in targets)
                {
                    cell[target] = await MeasureAsync(target, transport, count, settings, auth, http, settle, result, cancellationToken);
                }

                if (cell.TryGetValue(Gateway, out var gatewayRow) && cell.TryGetValue(Floor, out var floorRow))
                {
                    gatewayRow["xFloor"] = gatewayRow["bytesPerConnection"] / floorRow["bytesPerConnection"];
                }
            }
        }
    }

    /// <summary>One cell of one target: a fresh server, a warm-up connection, then N idle connections between two readings.</summary>
    private static async Task<ResultRow> MeasureAsync(string target, string transport, int count, ConnectionsSettings settings, LoadAuth auth,
        HttpMessageInvoker http, TimeSpan settle, ScenarioResult result, CancellationToken cancellationToken)
    {
        var external = target == Gateway && settings.Url is not null;
        var assembly = target == Gateway ? GatewayProcess.Locate(settings.GatewayDll) : BuildOutput.Locate(Path.Combine("tests", "AiStream.LoadTest.Floor"), "AiStream.LoadTest.Floor.dll");
        await using var server = external ? null : await GatewayProcess.StartAsync(assembly, auth.ServerSettings(), waitUntilReady: !settings.Smoke);
        var baseAddress = server?.BaseAddress ?? new Uri(settings.Url!.TrimEnd('/') + "/");
        var pid = server?.ProcessId ?? settings.GatewayPid;
        if (target == Gateway && pid is int p && !result.Settings.ContainsKey("gatewayOpenFilesLimit"))
        {
            result.Settings["gatewayOpenFilesLimit"] = ProcStats.OpenFilesLimit(p) ?? "unknown";
            result.Notes.Add($"open-files limit: this tool {result.Settings["toolOpenFilesLimit"]} (raised to its hard limit with setrlimit), the gateway {result.Settings["gatewayOpenFilesLimit"]} (from /proc/{p}/limits; inherited from the tool when the tool starts it, as is the floor's)");
        }

        var sessionId = FanoutRunner.NewSessionId("idle");
        // The floor has no session log to publish into: its watchers start at 0.
        var after = target == Gateway ? await FanoutRunner.StartMessageAsync(http, baseAddress, sessionId, cancellationToken) : 0;
        Watcher Create() => FanoutRunner.NewWatcher(transport, http, auth, baseAddress, sessionId, after, "all", 1);

        var warm = Create();
        await warm.ConnectAsync(cancellationToken);
        await warm.DisposeAsync();
        await Task.Delay(settle, cancellationToken);
        var collected = pid is int g1 && await FullGc.CollectAsync(g1, cancellationToken);
        var before = pid is int p1 ? ProcStats.RssBytes(p1) : double.NaN;
        var watchers = Enumerable.Range(0, count).Select(_ => Create()).ToList();
        var label = target == Gateway ? target : TargetLabel(auth);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            await FanoutCommand.ConnectAsync($"connections {label} {transport} N={count}", watchers, cancellationToken);
            var connectSeconds = clock.Elapsed.TotalSeconds;
            await Task.Delay(settle, cancellationToken);
            collected &= pid is int g2 && await FullGc.CollectAsync(g2, cancellationToken);
            var afterRss = pid is int p2 ? ProcStats.RssBytes(p2) : double.NaN;
            var failed = watchers.Count(w => w.Failure is not null);
            var row = new ResultRow
            {
                Labels = new()
                {
                    ["target"] = label,
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
                result.Problems.Add($"connections {label} {transport} N={count}: {failed} connections ended while idle; first: {watchers.First(w => w.Failure is not null).Failure}");
            }

            return row;
        }
        finally
        {
            await FanoutCommand.DisposeAllAsync(watchers);
        }
    }

    /// <summary>The floor's row label: "floor" behind the middleware, "floor-bare" without it (<c>--auth off</c>).</summary>
    private static string TargetLabel(LoadAuth auth) => auth.SigningKey is null ? "floor-bare" : Floor;

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
