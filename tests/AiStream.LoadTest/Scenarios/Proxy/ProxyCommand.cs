using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using AiStream.LoadTest.Cli;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Scenarios.Proxy;

/// <summary>Options of <c>proxy</c>.</summary>
public sealed class ProxySettings : ScenarioSettings
{
    [CommandOption("--concurrency <LIST>")]
    [Description("Concurrent streams, comma-separated. Default 1,100,500 (smoke: 1,4).")]
    public string? Concurrency { get; set; }

    [CommandOption("--gap-ms <LIST>")]
    [Description("Milliseconds between upstream chunks, comma-separated: 0 is a burst, 10 is paced. Default 0,10 (smoke: 0).")]
    public string? GapMs { get; set; }

    [CommandOption("--max-requests <N>")]
    [Description("Most streams per measured cell. Default 200000.")]
    public int? MaxRequests { get; set; }

    [CommandOption("--mock-port <PORT>")]
    [Description("With --url: the port the mock upstream listens on, which that gateway's provider must point at. Default: a free one.")]
    public int? MockPort { get; set; }

    [CommandOption("--model <NAME>")]
    [Description("With --url: the public model name that gateway maps to the mock. Default mock.")]
    public string? Model { get; set; }

    [CommandOption("--rounds <N>")]
    [Description("Measured phases per target and cell, taken in turn (direct, gateway, nginx, direct, ...) so drift of the shared machine hits every target alike; each phase lasts --duration. Default 3 (smoke: 1).")]
    public int? Rounds { get; set; }

    [CommandOption("--no-nginx")]
    [Description("Do not measure nginx.")]
    public bool NoNginx { get; set; }

    public override Spectre.Console.ValidationResult Validate()
    {
        var list = ValidateList(Concurrency, "--concurrency", 1, 20000);
        if (!list.Successful)
        {
            return list;
        }

        list = ValidateList(GapMs, "--gap-ms", 0, 1000);
        return !list.Successful ? list
            : MaxRequests is <= 0 ? Spectre.Console.ValidationResult.Error("--max-requests must be positive.")
            : Rounds is < 1 or > 20 ? Spectre.Console.ValidationResult.Error("--rounds must be between 1 and 20.")
            : base.Validate();
    }
}

/// <summary>
/// <c>proxy</c>: the same streamed completion straight from the mock upstream, through the gateway and through nginx
/// (proxy_buffering off), at each concurrency and chunk gap. "Added" figures are the target's percentile minus the
/// direct one's; CPU per token is the gateway's (or nginx's, workers included) utime+stime over the measured phase
/// divided by the content chunks it relayed.
/// </summary>
public sealed class ProxyCommand : ScenarioCommand<ProxySettings>
{
    private const string Direct = "direct";
    private const string Gateway = "aistream";
    private const string Nginx = "nginx";

    protected override string Name => "proxy";

    internal override IReadOnlyList<Column> Columns { get; } =
    [
        new("gapMs", "gap ms", IsLabel: true),
        new("concurrency", "conc", IsLabel: true),
        new("target", "target", IsLabel: true),
        new("streams", "streams", "0"),
        new("tokensPerSecond", "tokens/s", "0"),
        new("ttftP50Ms", "TTFT p50", "0.00"),
        new("ttftP99Ms", "TTFT p99", "0.00"),
        new("addedTtftP50Ms", "+TTFT p50", "0.00"),
        new("addedTtftP99Ms", "+TTFT p99", "0.00"),
        new("totalP50Ms", "total p50", "0.0"),
        new("addedTotalP50Ms", "+total p50", "0.00"),
        new("addedTotalP99Ms", "+total p99", "0.00"),
        new("cpuMicrosPerToken", "CPU µs/token", "0.0"),
        new("proxyCpuCores", "proxy cores", "0.00"),
        new("clientCpuCores", "tool cores", "0.00"),
        new("otherCpuCores", "other cores", "0.00"),
        new("badStreams", "bad", "0"),
    ];

    internal override IReadOnlyList<ChartSpec> Charts { get; } =
    [
        new("added-ttft-p99.png", "addedTtftP99Ms", "Added time to first token, p99 (target minus direct)", "ms"),
        new("cpu-per-token.png", "cpuMicrosPerToken", "Proxy CPU time per streamed token", "µs of CPU per token"),
    ];

    internal override async Task RunAsync(ProxySettings settings, ScenarioResult result, CancellationToken cancellationToken)
    {
        var concurrencies = ScenarioSettings.ParseList(settings.Concurrency ?? (settings.Smoke ? "1,4" : "1,100,500"));
        var gaps = ScenarioSettings.ParseList(settings.GapMs ?? (settings.Smoke ? "0" : "0,10"));
        var duration = TimeSpan.FromSeconds(settings.Duration ?? (settings.Smoke ? 0.5 : 10));
        // Long enough for the runtime's tiered compilation to settle: with 2 s the first measured seconds still paid for it.
        var warmup = settings.Smoke ? TimeSpan.FromSeconds(0.2) : TimeSpan.FromSeconds(6);
        var maxRequests = settings.MaxRequests ?? 200_000;
        var rounds = settings.Rounds ?? (settings.Smoke ? 1 : 3);
        var model = settings.Model ?? "mock";
        result.Settings["concurrency"] = string.Join(',', concurrencies);
        result.Settings["gapMs"] = string.Join(',', gaps);
        result.Settings["durationSeconds"] = duration.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        result.Settings["warmupSeconds"] = warmup.TotalSeconds.ToString(CultureInfo.InvariantCulture);
        result.Settings["rounds"] = rounds.ToString(CultureInfo.InvariantCulture);
        result.Settings["chunksPerStream"] = MockUpstream.Chunks.ToString(CultureInfo.InvariantCulture);

        await using var mock = await MockUpstream.StartAsync(gaps[0], settings.MockPort ?? 0);
        var mockHostPort = mock.BaseAddress.Authority;
        var auth = LoadAuth.From(settings, result);
        await using var targets = new TargetSet();
        targets.Add(Direct, mock.BaseAddress, pid: null);
        if (settings.Url is null)
        {
            var gateway = await GatewayProcess.StartAsync(GatewayProcess.Locate(settings.GatewayDll), auth.ServerSettings(new Dictionary<string, string>
            {
                ["AiStream:Providers:mock:Type"] = "OpenAICompatible",
                ["AiStream:Providers:mock:Endpoint"] = mock.BaseAddress + "v1",
                ["AiStream:Models:mock:Provider"] = "mock",
                ["AiStream:Models:mock:UpstreamModel"] = "mock-model",
                ["AiStream:Models:mock:IdleTimeoutSeconds"] = "120",
            }), waitUntilReady: !settings.Smoke);
            targets.Own(gateway);
            await Task.Delay(settings.Smoke ? 200 : 1000, cancellationToken);
            var idleBefore = ProcStats.CpuSeconds(gateway.ProcessId);
            var idle = TimeSpan.FromSeconds(settings.Smoke ? 0.5 : 3);
            await Task.Delay(idle, cancellationToken);
            var idleCpu = (ProcStats.CpuSeconds(gateway.ProcessId) - idleBefore) / idle.TotalSeconds;
            result.Settings["gatewayIdleCpuMillisPerSecond"] = (idleCpu * 1000).ToString("0.0", CultureInfo.InvariantCulture);
            targets.Add(Gateway, gateway.BaseAddress, gateway.ProcessId);
            result.Settings["gatewayOpenFilesLimit"] = ProcStats.OpenFilesLimit(gateway.ProcessId) ?? "unknown";
        }
        else
        {
            targets.Add(Gateway, new Uri(settings.Url.TrimEnd('/') + "/"), settings.GatewayPid);
            result.Notes.Add($"gateway at {settings.Url}; its provider must point at the mock on {mockHostPort} (--mock-port)");
        }

        if (settings.NoNginx)
        {
            result.Notes.Add("nginx not measured (--no-nginx)");
        }
        else if (NginxProcess.Find(out var why) is null)
        {
            result.Notes.Add(why);
            AnsiConsole.MarkupLineInterpolated($"[yellow]{why}[/]");
        }
        else
        {
            var nginx = await NginxProcess.StartProxyAsync(mockHostPort);
            targets.Own(nginx);
            targets.Add(Nginx, nginx.BaseAddress, nginx.ProcessId, withChildren: true);
        }

        result.Notes.Add("added = the target's percentile minus the direct one's in the same cell; the mock upstream and the client share this process and the machine's cores with the proxy under test");
        result.Notes.Add("CPU per token = the proxy process's utime+stime (nginx: master and workers) during the measured phase / content chunks relayed; it includes the proxy's idle CPU (gatewayIdleCpuMillisPerSecond), which dominates when few tokens flow");
        result.Notes.Add("closed loop: each of the concurrent clients starts its next stream when the last one ended, so a faster target also loads the shared cores harder; proxy cores and tool cores show how the 2 cores were shared");
        result.Notes.Add($"each target is measured in {rounds} phases of --duration taken in turn with the others (direct, gateway, nginx, direct, ...), and its latencies and CPU are merged over them, so slow drift of the shared machine affects every target alike; clients start spread over one stream's length, not all at once");

        using var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            MaxConnectionsPerServer = int.MaxValue,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(30),
        };
        // Every target gets the same requests, the bearer token included (the mock and nginx ignore it).
        using var http = new HttpMessageInvoker(new LoadAuth.BearerHandler(auth, handler), disposeHandler: false);
        foreach (var gap in gaps)
        {
            mock.GapMs = gap;
            foreach (var concurrency in concurrencies)
            {
                var cells = new Dictionary<string, ResultRow>();
                foreach (var target in targets.Targets)
                {
                    var warm = new Cell(http, target.BaseAddress, model, concurrency, gap);
                    await LiveStatus.RunAsync($"proxy gap={gap}ms c={concurrency} {target.Name} warm-up", warm.Status, () => warm.RunAsync(warmup, maxRequests, cancellationToken));
                }

                // Rounds in turn: each target's figures are merged over phases spread across the same minutes.
                var measured = targets.Targets.ToDictionary(t => t.Name, t => new Measured(new Cell(http, t.BaseAddress, model, concurrency, gap)));
                for (var round = 1; round <= rounds; round++)
                {
                    foreach (var target in targets.Targets)
                    {
                        var m = measured[target.Name];
                        var label = $"proxy gap={gap}ms c={concurrency} {target.Name} round {round}/{rounds}";
                        var cpuBefore = target.CpuSeconds();
                        var clientBefore = ProcStats.OwnCpuSeconds();
                        var machineBefore = ProcStats.MachineBusySeconds();
                        var clock = Stopwatch.StartNew();
                        await LiveStatus.RunAsync(label, m.Cell.Status, () => m.Cell.RunAsync(duration, maxRequests, cancellationToken));
                        m.Seconds += clock.Elapsed.TotalSeconds;
                        m.Cpu += target.CpuSeconds() - cpuBefore;
                        m.ClientCpu += ProcStats.OwnCpuSeconds() - clientBefore;
                        m.MachineCpu += ProcStats.MachineBusySeconds() - machineBefore;
                    }
                }

                foreach (var target in targets.Targets)
                {
                    var m = measured[target.Name];
                    var label = $"proxy gap={gap}ms c={concurrency} {target.Name}";
                    var row = m.Cell.ToRow(target.Name, gap, concurrency, m.Seconds);
                    row["cpuMicrosPerToken"] = target.Pid is null || row["tokens"] == 0 ? double.NaN : m.Cpu * 1e6 / row["tokens"];
                    row["cpuSeconds"] = target.Pid is null ? double.NaN : m.Cpu;
                    row["proxyCpuCores"] = target.Pid is null ? double.NaN : m.Cpu / m.Seconds;
                    row["clientCpuCores"] = m.ClientCpu / m.Seconds;
                    row["otherCpuCores"] = Math.Max(0, m.MachineCpu - m.ClientCpu - (target.Pid is null ? 0 : m.Cpu)) / m.Seconds;
                    row["rounds"] = rounds;
                    cells[target.Name] = row;
                    result.Rows.Add(row);
                    if (row["badStreams"] > 0 || row["errors"] > 0)
                    {
                        result.Problems.Add($"{label}: {row["badStreams"]} streams without {MockUpstream.Chunks} chunks, {row["errors"]} failed requests; first error: {m.Cell.FirstError}");
                    }
                }

                var direct = cells[Direct];
                foreach (var row in cells.Values)
                {
                    foreach (var metric in new[] { "ttftP50Ms", "ttftP99Ms", "totalP50Ms", "totalP99Ms" })
                    {
                        row["added" + char.ToUpperInvariant(metric[0]) + metric[1..]] = row[metric] - direct[metric];
                    }
                }
            }
        }
    }

    /// <summary>One target's cell and what its phases added up to.</summary>
    private sealed class Measured(Cell cell)
    {
        public Cell Cell { get; } = cell;

        public double Seconds { get; set; }

        public double Cpu { get; set; }

        public double ClientCpu { get; set; }

        public double MachineCpu { get; set; }
    }

    /// <summary>The endpoints measured, and the child processes owned for them.</summary>
    private sealed class TargetSet : IAsyncDisposable
    {
        private readonly List<ManagedProcess> _owned = [];

        public List<Target> Targets { get; } = [];

        public void Add(string name, Uri baseAddress, int? pid, bool withChildren = false) => Targets.Add(new Target(name, baseAddress, pid, withChildren));

        public void Own(ManagedProcess process) => _owned.Add(process);

        public async ValueTask DisposeAsync()
        {
            foreach (var process in _owned)
            {
                await process.DisposeAsync();
            }
        }
    }

    private sealed record Target(string Name, Uri BaseAddress, int? Pid, bool WithChildren)
    {
        public double CpuSeconds() => Pid is not int pid ? double.NaN : WithChildren ? ProcStats.CpuSecondsWithChildren(pid) : ProcStats.CpuSeconds(pid);
    }

    /// <summary>One measured phase: <c>concurrency</c> loops, each streaming one completion after another until the deadline.</summary>
    private sealed class Cell(HttpMessageInvoker http, Uri baseAddress, string model, int concurrency, int gapMs)
    {
        private readonly Latency _ttft = new();
        private readonly Latency _total = new();
        private readonly byte[] _body = Encoding.UTF8.GetBytes($$"""{"model":"{{model}}","stream":true,"messages":[{"role":"user","content":"Say tok sixty-four times."}]}""");
        private long _streams;
        private long _tokens;
        private long _bad;
        private long _errors;
        private long _minChunks = long.MaxValue;
        private long _maxChunks;
        private long _started;

        public string? FirstError { get; private set; }

        public string Status() => string.Create(CultureInfo.InvariantCulture,
            $"{Interlocked.Read(ref _streams)} streams, {Interlocked.Read(ref _tokens)} tokens, {Interlocked.Read(ref _errors)} errors");

        public async Task RunAsync(TimeSpan duration, int maxRequests, CancellationToken cancellationToken)
        {
            var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            // Starts spread over one paced stream's length, so the phase does not open with every client at once.
            var spread = TimeSpan.FromMilliseconds((double)gapMs * MockUpstream.Chunks / concurrency);
            var loops = Enumerable.Range(0, concurrency).Select(i => Task.Run(async () =>
            {
                if (i > 0 && spread > TimeSpan.Zero)
                {
                    await Task.Delay(spread * i, cancellationToken);
                }

                while (Stopwatch.GetTimestamp() < deadline && Interlocked.Increment(ref _started) <= maxRequests)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    await StreamOnceAsync(cancellationToken);
                }
            }, cancellationToken));
            await Task.WhenAll(loops);
        }

        private async Task StreamOnceAsync(CancellationToken cancellationToken)
        {
            var start = Stopwatch.GetTimestamp();
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(baseAddress, "v1/chat/completions"))
                {
                    Content = new ByteArrayContent(_body) { Headers = { ContentType = new("application/json") } },
                };
                using var response = await http.SendAsync(request, cancellationToken);
                if (!response.IsSuccessStatusCode)
                {
                    throw new HttpRequestException($"status {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
                }

                using var reader = new SseReader(await response.Content.ReadAsStreamAsync(cancellationToken), 16 * 1024);
                var chunks = 0;
                var done = false;
                while (await reader.NextLineAsync(cancellationToken) is { } line)
                {
                    if (!line.StartsWith("data: ", StringComparison.Ordinal))
                    {
                        continue;
                    }

                    if (line.AsSpan(6).SequenceEqual("[DONE]"))
                    {
                        done = true;
                        break;
                    }

                    if (line.Contains("\"content\":", StringComparison.Ordinal))
                    {
                        if (chunks++ == 0)
                        {
                            _ttft.RecordSince(start);
                        }
                    }
                }

                _total.RecordSince(start);
                Interlocked.Increment(ref _streams);
                Interlocked.Add(ref _tokens, chunks);
                InterlockedMin(ref _minChunks, chunks);
                InterlockedMax(ref _maxChunks, chunks);
                if (chunks != MockUpstream.Chunks || !done)
                {
                    Interlocked.Increment(ref _bad);
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                Interlocked.Increment(ref _errors);
                FirstError ??= e.Message;
            }
        }

        public ResultRow ToRow(string target, int gap, int concurrency, double seconds)
        {
            var row = new ResultRow
            {
                Labels = new()
                {
                    ["gapMs"] = gap.ToString(CultureInfo.InvariantCulture),
                    ["concurrency"] = concurrency.ToString(CultureInfo.InvariantCulture),
                    ["target"] = target,
                },
            };
            row["streams"] = _streams;
            row["tokens"] = _tokens;
            row["errors"] = _errors;
            row["badStreams"] = _bad;
            row["minChunksPerStream"] = _streams == 0 ? 0 : _minChunks;
            row["maxChunksPerStream"] = _maxChunks;
            row["seconds"] = Math.Round(seconds, 3);
            row["streamsPerSecond"] = _streams / seconds;
            row["tokensPerSecond"] = _tokens / seconds;
            row["ttftP50Ms"] = _ttft.PercentileMs(50);
            row["ttftP99Ms"] = _ttft.PercentileMs(99);
            row["ttftMaxMs"] = _ttft.MaxMs;
            row["totalP50Ms"] = _total.PercentileMs(50);
            row["totalP99Ms"] = _total.PercentileMs(99);
            row["totalMaxMs"] = _total.MaxMs;
            return row;
        }

        private static void InterlockedMin(ref long target, long value)
        {
            long current;
            while (value < (current = Interlocked.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
            {
            }
        }

        private static void InterlockedMax(ref long target, long value)
        {
            long current;
            while (value > (current = Interlocked.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
            {
            }
        }
    }
}
