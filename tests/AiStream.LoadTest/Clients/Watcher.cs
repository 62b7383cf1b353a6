using System.Collections;
using System.Diagnostics;
using System.Globalization;

namespace AiStream.LoadTest.Clients;

/// <summary>
/// One watcher of the fan-out: receives delta texts with markers (see <see cref="FanoutStats"/>), and keeps which
/// event indexes it has seen so lost and duplicated events are counted exactly.
/// </summary>
internal abstract class Watcher : IAsyncDisposable
{
    private readonly BitArray _seen;
    private readonly long[] _stamps = new long[4096];
    private readonly Lock _lock = new();
    private long _lastSeq;
    private int _received;
    private long _messages;

    protected Watcher(string group, int capacity)
    {
        Group = group;
        _seen = new BitArray(capacity);
    }

    /// <summary>The watcher's group (its node, in <c>cluster</c>).</summary>
    public string Group { get; }

    /// <summary>Where deliveries are counted; swapped between phases.</summary>
    public FanoutStats? Stats { get; set; }

    /// <summary>Distinct events received since <see cref="ResetCount"/>.</summary>
    public int Received => Volatile.Read(ref _received);

    /// <summary>Why the stream ended early, if it did.</summary>
    public string? Failure { get; protected set; }

    /// <summary>Messages of any kind taken so far (probes included).</summary>
    public long Messages => Interlocked.Read(ref _messages);

    public void ResetCount() => Volatile.Write(ref _received, 0);

    public abstract Task ConnectAsync(CancellationToken cancellationToken);

    public abstract ValueTask DisposeAsync();

    /// <summary>Takes one delivered delta; <paramref name="seq"/> is its position, or -1 where the transport has none (Nchan).</summary>
    protected void OnDelta(ReadOnlySpan<char> delta, long seq)
    {
        Interlocked.Increment(ref _messages);
        var now = Stopwatch.GetTimestamp();
        var stats = Stats;
        lock (_lock)
        {
            if (seq >= 0)
            {
                if (seq <= _lastSeq)
                {
                    stats?.Reordered();
                }

                _lastSeq = seq;
            }

            var count = 0;
            while (!delta.IsEmpty)
            {
                var hash = delta.IndexOf('#');
                if (hash < 0)
                {
                    break;
                }

                delta = delta[(hash + 1)..];
                var at = delta.IndexOf('@');
                var end = delta.IndexOf(' ');
                if (at < 0 || end < at)
                {
                    break;
                }

                var index = int.Parse(delta[..at], NumberStyles.None, CultureInfo.InvariantCulture);
                var stamp = long.Parse(delta[(at + 1)..end], NumberStyles.None, CultureInfo.InvariantCulture);
                delta = delta[(end + 1)..];
                if (index >= _seen.Length)
                {
                    continue;
                }

                if (_seen[index])
                {
                    stats?.Duplicate();
                    continue;
                }

                _seen[index] = true;
                _received++;
                if (count < _stamps.Length)
                {
                    _stamps[count++] = stamp;
                }
            }

            if (count > 0)
            {
                stats?.Frame(Group, count, _stamps, now);
            }
        }
    }

    protected void OnDisconnected(string reason)
    {
        Failure ??= reason;
        Stats?.Disconnected();
    }
}
