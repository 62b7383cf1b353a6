using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using AiStream.LoadTest.Clients;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;

namespace AiStream.LoadTest.Scenarios.Fanout;

/// <summary>Publishes one marker text as one event (a gateway session publish, or an Nchan publish).</summary>
internal delegate Task PublishAsync(string marker, CancellationToken cancellationToken);

/// <summary>A process whose CPU time is charged to the delivered events (the gateway, nginx, redis-server).</summary>
internal sealed record CpuProbe(string Name, Func<double> CpuSeconds);

/// <summary>The fan-out measurement shared by <c>fanout</c> and <c>cluster</c>: connect watchers, publish, drain, count.</summary>
internal static class FanoutRunner
{
    /// <summary>Sessions are unique per cell so the log holds only that cell's events.</summary>
    public static string NewSessionId(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>The watch URL of every SSE watcher: all watchers are one presence member, so joining adds no events.</summary>
    public static Uri SseUrl(Uri gateway, string sessionId, long afterSeq) =>
        new(gateway, string.Create(CultureInfo.InvariantCulture, $"api/sessions/{sessionId}/events?after={afterSeq}&clientId=loadtest&name=loadtest"));

    public static Uri HubUrl(Uri gateway) => new(gateway, "hubs/sessions?clientId=loadtest&name=loadtest");

    /// <summary>A watcher of <paramref name="sessionId"/> on one gateway over <paramref name="transport"/> ("sse" or "signalr").</summary>
    /// <remarks>SSE watchers take the bearer token from <paramref name="http"/> (<see cref="SseWatcher.CreateClient"/>); hub watchers from <paramref name="auth"/>.</remarks>
    public static Watcher NewWatcher(string transport, HttpMessageInvoker http, LoadAuth auth, Uri gateway, string sessionId, long afterSeq, string group, int capacity) =>
        transport == "sse"
            ? new SseWatcher(http, SseUrl(gateway, sessionId, afterSeq), group, capacity)
            : new HubWatcher(HubUrl(gateway), sessionId, afterSeq, group, capacity, auth.Token);

    /// <summary>Publishes <c>TEXT_MESSAGE_START</c> of message <c>m1</c> and returns its position: the watchers' start.</summary>
    public static async Task<long> StartMessageAsync(HttpMessageInvoker http, Uri gateway, string sessionId, CancellationToken cancellationToken)
    {
        // A node on Redis answers 503 until its connection is up (smoke runs do not wait for /readyz): retry a while.
        for (var attempt = 0; ; attempt++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(gateway, $"api/sessions/{sessionId}/events"))
            {
                Content = new StringContent("""{"type":"TEXT_MESSAGE_START","messageId":"m1","role":"assistant"}""", Encoding.UTF8, "application/json"),
            };
            using var response = await http.SendAsync(request, cancellationToken);
            if (response.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable && attempt < 300)
            {
                await Task.Delay(100, cancellationToken);
                continue;
            }

            response.EnsureSuccessStatusCode();
            using var body = await JsonDocument.ParseAsync(await response.Content.ReadAsStreamAsync(cancellationToken), cancellationToken: cancellationToken);
            return body.RootElement.GetProperty("seqs")[0].GetInt64();
        }
    }

    /// <summary>A publisher of <c>TEXT_MESSAGE_CONTENT</c> events of message <c>m1</c>, one event per POST.</summary>
    public static PublishAsync GatewayPublisher(HttpMessageInvoker http, Uri gateway, string sessionId)
    {
        var url = new Uri(gateway, $"api/sessions/{sessionId}/events");
        return async (marker, cancellationToken) =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url)
            {
                Content = new StringContent($$"""{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"{{marker}}"}""", Encoding.UTF8, "application/json"),
            };
            using var response = await http.SendAsync(request, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException($"publish answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }

            _ = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        };
    }

    /// <summary>Connects every watcher, <paramref name="parallelism"/> at a time.</summary>
    public static async Task ConnectAllAsync(IReadOnlyList<Watcher> watchers, int parallelism, Action connected, CancellationToken cancellationToken)
    {
        await Parallel.ForEachAsync(watchers, new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = cancellationToken }, async (watcher, ct) =>
        {
            await watcher.ConnectAsync(ct);
            connected();
        });
    }

    /// <summary>
    /// One phase: publish at <paramref name="rate"/> events/s (0: back to back, each publish awaited) for
    /// <paramref name="duration"/> or <paramref name="maxEvents"/>, whichever ends first, then wait (up to
    /// <paramref name="drain"/>) until every watcher has every event. Fills <paramref name="row"/>.
    /// </summary>
    public static async Task RunPhaseAsync(
        string label,
        PublishAsync publish,
        IReadOnlyList<Watcher> watchers,
        int indexBase,
        int rate,
        TimeSpan duration,
        int maxEvents,
        TimeSpan drain,
        IReadOnlyList<CpuProbe> probes,
        ResultRow row,
        ScenarioResult result,
        CancellationToken cancellationToken)
    {
        var stats = new FanoutStats(watchers.Select(w => w.Group).Distinct());
        foreach (var watcher in watchers)
        {
            watcher.ResetCount();
            watcher.Stats = stats;
        }

        var published = 0;
        var cpuBefore = probes.Select(p => p.CpuSeconds()).ToArray();
        var clientBefore = ProcStats.OwnCpuSeconds();
        var machineBefore = ProcStats.MachineBusySeconds();
        var start = Stopwatch.GetTimestamp();
        var end = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        string Status() => string.Create(CultureInfo.InvariantCulture,
            $"published {published}, delivered {stats.Events} of {(long)published * watchers.Count}, p99 {stats.All.PercentileMs(99):0.0} ms, disconnects {stats.Disconnects}");
        long publishEnd = 0;
        await LiveStatus.RunAsync(label, Status, async () =>
        {
            while (published < maxEvents && Stopwatch.GetTimestamp() < end)
            {
                if (rate > 0)
                {
                    var due = start + (long)((double)published * Stopwatch.Frequency / rate);
                    var wait = due - Stopwatch.GetTimestamp();
                    if (wait > 0)
                    {
                        await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency), cancellationToken);
                    }
                }

                var index = indexBase + published;
                await publish(string.Create(CultureInfo.InvariantCulture, $"#{index}@{Stopwatch.GetTimestamp()} "), cancellationToken);
                published++;
            }

            publishEnd = Stopwatch.GetTimestamp();
            var drainEnd = publishEnd + (long)(drain.TotalSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetTimestamp() < drainEnd && watchers.Any(w => w.Received < published && w.Failure is null))
            {
                await Task.Delay(20, cancellationToken);
            }
        });

        var cpu = probes.Select((p, i) => p.CpuSeconds() - cpuBefore[i]).ToArray();
        var clientCpu = ProcStats.OwnCpuSeconds() - clientBefore;
        var machineCpu = ProcStats.MachineBusySeconds() - machineBefore;
        var phaseSeconds = (double)(Stopwatch.GetTimestamp() - start) / Stopwatch.Frequency;
        var lastReceipt = Math.Max(stats.LastReceipt, start + 1);
        var seconds = (double)(lastReceipt - start) / Stopwatch.Frequency;
        var expected = (long)published * watchers.Count;
        var lost = expected - watchers.Sum(w => (long)w.Received);
        row["watchers"] = watchers.Count;
        row["published"] = published;
        row["publishedPerSecond"] = published / ((double)(publishEnd - start) / Stopwatch.Frequency);
        row["delivered"] = stats.Events;
        row["frames"] = stats.Frames;
        row["deliveredPerSecond"] = stats.Events / seconds;
        row["lost"] = lost;
        row["duplicated"] = stats.Duplicates;
        row["outOfOrder"] = stats.OutOfOrder;
        row["disconnects"] = stats.Disconnects;
        row["latencyP50Ms"] = stats.All.PercentileMs(50);
        row["latencyP99Ms"] = stats.All.PercentileMs(99);
        row["latencyMaxMs"] = stats.All.MaxMs;
        foreach (var (group, latency) in stats.Groups.Where(_ => stats.Groups.Count > 1))
        {
            row[group + "P50Ms"] = latency.PercentileMs(50);
            row[group + "P99Ms"] = latency.PercentileMs(99);
        }

        for (var i = 0; i < probes.Count; i++)
        {
            var key = probes[i].Name + "CpuMicrosPerEvent";
            row[key] = stats.Events == 0 ? double.NaN : cpu[i] * 1e6 / stats.Events;
            row[probes[i].Name + "CpuSeconds"] = cpu[i];
            row[probes[i].Name + "CpuCores"] = cpu[i] / phaseSeconds;
        }

        // The watchers and the publisher run in this process on the same cores: how much of them it took.
        row["clientCpuCores"] = clientCpu / phaseSeconds;
        row["otherCpuCores"] = Math.Max(0, machineCpu - clientCpu - cpu.Sum()) / phaseSeconds;

        if (lost != 0 || stats.Duplicates != 0 || stats.OutOfOrder != 0 || stats.Disconnects != 0)
        {
            var failure = watchers.Select(w => w.Failure).FirstOrDefault(f => f is not null);
            result.Problems.Add(string.Create(CultureInfo.InvariantCulture,
                $"{label}: {lost} lost, {stats.Duplicates} duplicated, {stats.OutOfOrder} out of order, {stats.Disconnects} disconnects{(failure is null ? string.Empty : "; first: " + failure)}"));
        }
    }

    /// <summary>Publishes to Nchan's <c>/pub/{channel}</c>: the message body is the marker.</summary>
    public static PublishAsync NchanPublisher(HttpMessageInvoker http, Uri nginx, string channel)
    {
        var url = new Uri(nginx, "pub/" + channel);
        return async (marker, cancellationToken) =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(marker, Encoding.UTF8, "text/plain") };
            request.Headers.Accept.ParseAdd("application/json");
            using var response = await http.SendAsync(request, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException($"Nchan publish answered {(int)response.StatusCode}");
            }

            _ = await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
        };
    }
}
