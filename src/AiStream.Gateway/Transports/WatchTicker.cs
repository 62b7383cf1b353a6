using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Heartbeats of every open SSE watch and presence renewals of every watch and hub join, from one timer. Two timers per
/// watch (each a timer queue entry, its wrapper, callback and state) were about 400 bytes of an idle watcher. The
/// timer ticks every twentieth of the shorter interval, so each watch keeps its own phase and is served within 5% of
/// its interval. Hand-written because no library keeps many per-item deadlines on one timer.
/// </summary>
internal sealed class WatchTicker : IDisposable
{
    private readonly Lock _lock = new();
    private readonly SlotList<Entry> _entries = new();
    private readonly List<Entry> _heartbeats = [];
    private readonly List<Entry> _renewals = [];
    private readonly TimeProvider _time;
    private readonly IPresenceStore _presence;
    private readonly long _heartbeatEvery;
    private readonly long _renewEvery;
    private readonly ITimer _timer;
    private int _ticking;

    public WatchTicker(TimeProvider time, IPresenceStore presence, IOptions<TransportsOptions> options)
    {
        _time = time;
        _presence = presence;
        var heartbeat = TimeSpan.FromSeconds(options.Value.SseHeartbeatSeconds);
        var renew = presence.RenewInterval;
        _heartbeatEvery = ToTimestamp(heartbeat);
        _renewEvery = ToTimestamp(renew);
        var period = TimeSpan.FromTicks(Math.Max(TimeSpan.TicksPerMillisecond * 5, Math.Min(heartbeat.Ticks, renew.Ticks) / 20));
        _timer = time.CreateTimer(static s => ((WatchTicker)s!).Tick(), this, period, period);
    }

    /// <summary>Number of watches served.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Starts renewals of a presence connection, and heartbeats for <paramref name="subscriber"/> unless it is null.</summary>
    public Entry Add(Subscriber? subscriber, string sessionId, string memberId, string connectionId)
    {
        var now = _time.GetTimestamp();
        return Register(new Entry(subscriber, sessionId, memberId, connectionId)
        {
            NextHeartbeat = now + _heartbeatEvery,
            NextRenewal = now + _renewEvery,
        });
    }

    /// <summary>Heartbeats only, for a stream that is not a presence connection (an AI SDK chat stream).</summary>
    public Entry AddHeartbeats(Subscriber subscriber) => Register(new Entry(subscriber, string.Empty, string.Empty, string.Empty)
    {
        NextHeartbeat = _time.GetTimestamp() + _heartbeatEvery,
        NextRenewal = long.MaxValue,
    });

    /// <summary>Stops serving a watch; safe to call more than once.</summary>
    public void Remove(Entry entry)
    {
        lock (_lock)
        {
            _entries.Remove(entry);
        }
    }

    /// <summary>
    /// Ends every SSE watch with <paramref name="reason"/> (the host is stopping): each writes its
    /// <c>: disconnected:</c> comment and ends, so EventSource clients reconnect, to another node behind a load
    /// balancer, at once instead of when the shutdown timeout cuts them off.
    /// </summary>
    public void CloseWatches(string reason)
    {
        List<Subscriber> watches;
        lock (_lock)
        {
            watches = [];
            foreach (var entry in _entries)
            {
                if (entry.Subscriber is { } subscriber)
                {
                    watches.Add(subscriber);
                }
            }
        }

        foreach (var subscriber in watches)
        {
            subscriber.Close(reason);
        }
    }

    public void Dispose() => _timer.Dispose();

    private void Tick()
    {
        // A tick that outlasts the period is not overlapped by the next one.
        if (Interlocked.Exchange(ref _ticking, 1) == 1)
        {
            return;
        }

        try
        {
            var now = _time.GetTimestamp();
            lock (_lock)
            {
                foreach (var entry in _entries)
                {
                    if (entry.Subscriber is not null && now >= entry.NextHeartbeat)
                    {
                        entry.NextHeartbeat = now + _heartbeatEvery;
                        _heartbeats.Add(entry);
                    }

                    if (now >= entry.NextRenewal)
                    {
                        entry.NextRenewal = now + _renewEvery;
                        _renewals.Add(entry);
                    }
                }
            }

            // Outside the lock: waking a writer and touching the presence store take their own locks.
            foreach (var entry in _heartbeats)
            {
                entry.Subscriber!.RequestHeartbeat();
            }

            foreach (var entry in _renewals)
            {
                _presence.Renew(entry.SessionId, entry.MemberId, entry.ConnectionId);
            }
        }
        finally
        {
            _heartbeats.Clear();
            _renewals.Clear();
            Volatile.Write(ref _ticking, 0);
        }
    }

    private Entry Register(Entry entry)
    {
        lock (_lock)
        {
            _entries.Add(entry);
        }

        return entry;
    }

    private long ToTimestamp(TimeSpan interval) => (long)(interval.TotalSeconds * _time.TimestampFrequency);

    /// <summary>One watch served by the ticker.</summary>
    internal sealed class Entry(Subscriber? subscriber, string sessionId, string memberId, string connectionId) : Slotted
    {
        public Subscriber? Subscriber { get; } = subscriber;

        public string SessionId { get; } = sessionId;

        public string MemberId { get; } = memberId;

        public string ConnectionId { get; } = connectionId;

        public long NextHeartbeat { get; set; }

        public long NextRenewal { get; set; }
    }
}
