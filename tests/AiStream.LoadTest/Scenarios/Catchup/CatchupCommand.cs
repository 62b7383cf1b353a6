using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using AiStream.LoadTest.Cli;
using AiStream.LoadTest.Clients;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Scenarios.Catchup;

/// <summary>Options of <c>catchup</c>.</summary>
public sealed class CatchupSettings : ScenarioSettings
{
    [CommandOption("--events <N>")]
    [Description("Events in the session's log before watchers join. Default 10000 (smoke: 2000).")]
    public int? Events { get; set; }

    [CommandOption("--trials <N>")]
    [Description("New watchers timed per mode. Default 20 (smoke: 3).")]
    public int? Trials { get; set; }

    public override Spectre.Console.ValidationResult Validate() =>
        Events is < 10 or > 1_000_000 ? Spectre.Console.ValidationResult.Error("--events must be between 10 and 1000000.")
        : Trials is < 1 or > 10_000 ? Spectre.Console.ValidationResult.Error("--trials must be between 1 and 10000.")
        : base.Validate();
}

/// <summary>
/// <c>catchup</c>: a session whose log holds a long message (START, thousands of CONTENT, END). A new watcher with no
/// position gets the catch-up snapshot; one with <c>?after=0</c> gets the whole log replayed. Right after its
/// response headers arrive a live <c>CUSTOM</c> event is published; the watcher is caught up when that event
/// arrives. Time and body bytes are taken up to that point.
/// </summary>
public sealed class CatchupCommand : ScenarioCommand<CatchupSettings>
{
    protected override string Name => "catchup";

    internal override IReadOnlyList<Column> Columns { get; } =
    [
        new("target", "target", IsLabel: true),
        new("mode", "mode", IsLabel: true),
        new("logEvents", "log events", "0"),
        new("trials", "trials", "0"),
        new("eventsReceivedMean", "events received", "0"),
        new("bytesMean", "bytes", "0"),
        new("firstEventP50Ms", "first event p50", "0.00"),
        new("caughtUpP50Ms", "caught up p50 ms", "0.00"),
        new("caughtUpMaxMs", "caught up max ms", "0.00"),
    ];

    internal override IReadOnlyList<ChartSpec> Charts { get; } =
    [
        new("caught-up-p50.png", "caughtUpP50Ms", "Time for a new watcher to be caught up (live event delivered), p50", "ms"),
        new("bytes.png", "bytesMean", "Bytes sent to a new watcher until caught up", "bytes"),
    ];

    internal override async Task RunAsync(CatchupSettings settings, ScenarioResult result, CancellationToken cancellationToken)
    {
        var events = settings.Events ?? (settings.Smoke ? 2000 : 10_000);
        var trials = settings.Trials ?? (settings.Smoke ? 3 : 20);
        result.Settings["logEvents"] = events.ToString(CultureInfo.InvariantCulture);
        result.Settings["trials"] = trials.ToString(CultureInfo.InvariantCulture);

        // The replay needs a gateway that keeps and replays the whole log, and does not merge deltas of a watcher that
        // is behind (which a replay of thousands of events always is): otherwise ?after=0 would be answered with the
        // snapshot or with merged deltas, and there would be nothing to compare.
        var gatewaySettings = new Dictionary<string, string>
        {
            ["AiStream:Sessions:MaxEvents"] = (events * 2).ToString(CultureInfo.InvariantCulture),
            ["AiStream:Sessions:MaxReplayEvents"] = (events * 2).ToString(CultureInfo.InvariantCulture),
            ["AiStream:Sessions:CoalesceThreshold"] = "1000000",
            ["AiStream:Sessions:SubscriberHardLimit"] = "10000000",
        };
        if (settings.Url is null)
        {
            foreach (var (key, value) in gatewaySettings)
            {
                result.Settings["gateway:" + key] = value;
            }
        }
        else
        {
            result.Notes.Add("with --url the gateway must be started with " + string.Join(' ', gatewaySettings.Select(s => s.Key.Replace(":", "__", StringComparison.Ordinal) + "=" + s.Value)) + " for ?after=0 to be a full replay");
        }

        result.Notes.Add("caught up = the first live event, published as soon as the watcher's response headers arrived, was received; bytes = SSE body bytes up to and including it");

        var auth = LoadAuth.From(settings, result);
        await using var gateway = settings.Url is null ? await GatewayProcess.StartAsync(GatewayProcess.Locate(settings.GatewayDll), auth.ServerSettings(gatewaySettings), waitUntilReady: !settings.Smoke) : null;
        var baseAddress = gateway?.BaseAddress ?? new Uri(settings.Url!.TrimEnd('/') + "/");
        using var http = SseWatcher.CreateClient(auth);
        var sessionId = Fanout.FanoutRunner.NewSessionId("catchup");
        var fill = Stopwatch.StartNew();
        var written = 0;
        await LiveStatus.RunAsync($"catchup filling a log of {events} events", () => string.Create(CultureInfo.InvariantCulture, $"{written} events"), async () =>
        {
            var batch = new List<string>(1000) { """{"type":"TEXT_MESSAGE_START","messageId":"long","role":"assistant"}""" };
            for (var i = 0; i < events - 2; i++)
            {
                batch.Add(string.Create(CultureInfo.InvariantCulture, $$"""{"type":"TEXT_MESSAGE_CONTENT","messageId":"long","delta":"tok{{i}} "}"""));
                if (batch.Count == 1000)
                {
                    await PublishAsync(http, baseAddress, sessionId, batch, cancellationToken);
                    written += batch.Count;
                    batch.Clear();
                }
            }

            batch.Add("""{"type":"TEXT_MESSAGE_END","messageId":"long"}""");
            await PublishAsync(http, baseAddress, sessionId, batch, cancellationToken);
            written += batch.Count;
        });
        result.Settings["fillSeconds"] = fill.Elapsed.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture);

        var live = 0;
        foreach (var mode in new[] { "snapshot", "replay" })
        {
            var caughtUp = new Latency();
            var first = new Latency();
            var bytes = new List<long>();
            var received = new List<long>();
            var done = 0;
            await LiveStatus.RunAsync($"catchup {mode}", () => string.Create(CultureInfo.InvariantCulture, $"{done} of {trials} watchers, caught up p50 {caughtUp.PercentileMs(50):0.0} ms"), async () =>
            {
                for (var t = 0; t < trials; t++)
                {
                    var trial = await TrialAsync(http, baseAddress, sessionId, mode == "replay", ++live, cancellationToken);
                    caughtUp.RecordTicks(trial.CaughtUpTicks);
                    first.RecordTicks(trial.FirstEventTicks);
                    bytes.Add(trial.Bytes);
                    received.Add(trial.Events);
                    done++;
                }
            });

            var row = new ResultRow { Labels = new() { ["target"] = "aistream", ["mode"] = mode } };
            row["logEvents"] = events;
            row["trials"] = trials;
            row["eventsReceivedMean"] = received.Average();
            row["bytesMean"] = bytes.Average();
            row["bytesMax"] = bytes.Max();
            row["firstEventP50Ms"] = first.PercentileMs(50);
            row["caughtUpP50Ms"] = caughtUp.PercentileMs(50);
            row["caughtUpP99Ms"] = caughtUp.PercentileMs(99);
            row["caughtUpMaxMs"] = caughtUp.MaxMs;
            result.Rows.Add(row);
        }

        var snapshot = result.Rows[0];
        var replay = result.Rows[1];
        if (replay["eventsReceivedMean"] < events)
        {
            result.Problems.Add($"the replay delivered {replay["eventsReceivedMean"]} events on average, fewer than the {events} in the log");
        }

        if (snapshot["bytesMean"] >= replay["bytesMean"])
        {
            result.Problems.Add("the snapshot was not smaller than the replay");
        }
    }

    private static async Task PublishAsync(HttpMessageInvoker http, Uri gateway, string sessionId, List<string> batch, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(gateway, $"api/sessions/{sessionId}/events"))
        {
            Content = new StringContent("[" + string.Join(',', batch) + "]", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"publish answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }

        _ = await response.Content.ReadAsByteArrayAsync(cancellationToken);
    }

    private sealed record Trial(long CaughtUpTicks, long FirstEventTicks, long Bytes, long Events);

    private static async Task<Trial> TrialAsync(HttpMessageInvoker http, Uri gateway, string sessionId, bool replay, int live, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        var url = new Uri(gateway, $"api/sessions/{sessionId}/events?clientId=loadtest&name=loadtest" + (replay ? "&after=0" : string.Empty));
        var start = Stopwatch.GetTimestamp();
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        using var response = await http.SendAsync(request, timeout.Token);
        response.EnsureSuccessStatusCode();
        var marker = string.Create(CultureInfo.InvariantCulture, $"\"value\":{live}");
        await PublishAsync(http, gateway, sessionId,
            [string.Create(CultureInfo.InvariantCulture, $$"""{"type":"CUSTOM","name":"loadtest.live","value":{{live}}}""")], timeout.Token);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync(timeout.Token), 64 * 1024);
        long bytes = 0;
        long events = 0;
        long firstEvent = 0;
        while (await reader.NextLineAsync(timeout.Token) is { } line)
        {
            bytes += Encoding.UTF8.GetByteCount(line) + 1;
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
            {
                continue;
            }

            if (firstEvent == 0)
            {
                firstEvent = Stopwatch.GetTimestamp() - start;
            }

            if (line.Contains("\"loadtest.live\"", StringComparison.Ordinal) && line.Contains(marker, StringComparison.Ordinal))
            {
                // The blank line that ends the event.
                bytes++;
                return new Trial(Stopwatch.GetTimestamp() - start, firstEvent, bytes, events);
            }

            events++;
        }

        throw new IOException("the watch ended before the live event arrived");
    }
}
