using System.Diagnostics;
using AiStream.LoadTest.Infrastructure;

namespace AiStream.LoadTest.Clients;

/// <summary>
/// What the watchers of one phase received. Each published event carries a marker <c>#index@timestamp </c> in its
/// delta text (the timestamp is the publisher's <see cref="Stopwatch"/> reading just before the publish, the same
/// clock the watchers read), so latency is taken per event, and a delta the gateway merged for a watcher that was
/// behind (backpressure coalescing) still accounts for every event inside it.
/// </summary>
internal sealed class FanoutStats
{
    private long _events;
    private long _frames;
    private long _duplicates;
    private long _outOfOrder;
    private long _disconnects;
    private long _lastReceipt;

    public FanoutStats(IEnumerable<string> groups)
    {
        foreach (var group in groups)
        {
            Groups[group] = new Latency();
        }
    }

    /// <summary>Publish-to-receive latency of every delivered event.</summary>
    public Latency All { get; } = new();

    /// <summary>The same per watcher group (for <c>cluster</c>: the publisher's node and the other node).</summary>
    public Dictionary<string, Latency> Groups { get; } = [];

    /// <summary>Events delivered (one per marker: a merged frame counts every event it carries).</summary>
    public long Events => Interlocked.Read(ref _events);

    /// <summary>Frames delivered (SSE data lines or hub invocations).</summary>
    public long Frames => Interlocked.Read(ref _frames);

    public long Duplicates => Interlocked.Read(ref _duplicates);

    public long OutOfOrder => Interlocked.Read(ref _outOfOrder);

    public long Disconnects => Interlocked.Read(ref _disconnects);

    /// <summary>Stopwatch timestamp of the last delivery.</summary>
    public long LastReceipt => Interlocked.Read(ref _lastReceipt);

    public void Frame(string group, int events, long[] publishTimestamps, long now)
    {
        Interlocked.Increment(ref _frames);
        Interlocked.Add(ref _events, events);
        var latency = Groups.GetValueOrDefault(group);
        for (var i = 0; i < events; i++)
        {
            var ticks = now - publishTimestamps[i];
            All.RecordTicks(ticks);
            latency?.RecordTicks(ticks);
        }

        Interlocked.Exchange(ref _lastReceipt, now);
    }

    public void Duplicate() => Interlocked.Increment(ref _duplicates);

    public void Reordered() => Interlocked.Increment(ref _outOfOrder);

    public void Disconnected() => Interlocked.Increment(ref _disconnects);
}
