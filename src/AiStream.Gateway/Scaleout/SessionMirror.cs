using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>This node's copy of one session, and what it needs to keep it in step with Redis.</summary>
internal sealed class SessionMirror(string sessionId, SessionLog log)
{
    private readonly Lock _lock = new();
    private readonly Queue<BufferedAppend> _buffered = new();
    private int _users;
    private int _retains;
    private bool _removed;
    private int _bufferedCount;

    public string SessionId { get; } = sessionId;

    /// <summary>The local log; replaced (never mutated into another session) on a reset. Writes hold <see cref="Gate"/>.</summary>
    public SessionLog Log { get; set; } = log;

    /// <summary>Serialises everything that changes the log: local appends, channel deliveries, gap fills, flushes.</summary>
    public SemaphoreSlim Gate { get; } = new(1, 1);

    public ChannelMessageQueue? Queue { get; set; }

    public volatile bool Loaded;

    public bool Conflict { get; set; }

    public bool Advertised { get; set; }

    public int RemoteWatchers { get; set; }

    public long CheckpointSeq { get; set; }

    public DateTimeOffset CheckpointAt { get; set; } = DateTimeOffset.MinValue;

    /// <summary>When this node last renewed the session's key lifetime.</summary>
    public DateTimeOffset TtlRenewedAt { get; set; } = DateTimeOffset.MinValue;

    public int BufferedCount => Volatile.Read(ref _bufferedCount);

    public bool Retained => Volatile.Read(ref _retains) > 0;

    /// <summary>Marks one more user; false when the mirror was forgotten and a fresh one must be taken.</summary>
    public bool Retain()
    {
        lock (_lock)
        {
            if (_removed)
            {
                return false;
            }

            _users++;
            return true;
        }
    }

    public void Release()
    {
        lock (_lock)
        {
            _users--;
        }

        Touch();
    }

    /// <summary>Keeps the mirror (a run writes to it) until the returned retention is disposed.</summary>
    public void Hold() => Interlocked.Increment(ref _retains);

    public void Unhold() => Interlocked.Decrement(ref _retains);

    public void Touch() => Log.Touch();

    public bool IsUnused(TimeSpan idle)
    {
        lock (_lock)
        {
            return _users == 0 && Log.IsUnused(idle);
        }
    }

    public bool TryRemove()
    {
        lock (_lock)
        {
            if (_users > 0 || _bufferedCount > 0)
            {
                return false;
            }

            _removed = true;
            return true;
        }
    }

    public void Buffer(BufferedAppend pending)
    {
        _buffered.Enqueue(pending);
        Interlocked.Add(ref _bufferedCount, pending.Bodies.Length);
    }

    public BufferedAppend? PeekBuffered() => _buffered.TryPeek(out var pending) ? pending : null;

    public void DropBuffered()
    {
        var pending = _buffered.Dequeue();
        Interlocked.Add(ref _bufferedCount, -pending.Bodies.Length);
    }
}

/// <summary>A batch appended locally while Redis was away, at the positions it was delivered with, waiting to be written.</summary>
internal sealed record BufferedAppend(byte[][] Bodies, string? RunId, long AppendedAt, long FirstSeq);
