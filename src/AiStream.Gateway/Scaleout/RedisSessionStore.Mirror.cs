using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>The mirrors: this node's copy of each session it serves, loaded from the checkpoint and the stream, and kept while retained or watched.</summary>
internal sealed partial class RedisSessionStore
{
    private async Task EnsureLoadedAsync(Mirror mirror, CancellationToken cancellationToken)
    {
        if (mirror.Loaded)
        {
            return;
        }

        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (mirror.Loaded)
            {
                return;
            }

            // Subscribe before reading, so nothing published in between is missed; what arrives meanwhile waits on
            // the gate and is skipped if the read already had it.
            if (mirror.Queue is null)
            {
                var queue = await _redis.Subscriber.SubscribeAsync(_redis.Channel(mirror.SessionId)).ConfigureAwait(false);
                mirror.Queue = queue;
                _ = Task.Run(() => ReadChannelAsync(mirror, queue), CancellationToken.None);
            }

            var fresh = await LoadAsync(mirror.SessionId, mirror.Log.Head).ConfigureAwait(false);
            if (mirror.BufferedCount > 0 || mirror.Log.Head > 0)
            {
                // Events buffered before the first load: keep them; the flush reconciles.
                mirror.Loaded = true;
                return;
            }

            fresh.TakeOverQuietly(mirror.Log);
            mirror.Log = fresh;
            mirror.CheckpointSeq = fresh.Head;
            mirror.Loaded = true;
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>Builds a session's state from Redis: its checkpoint, then the stream after it.</summary>
    private async Task<SessionLog> LoadAsync(string sessionId, long atLeast)
    {
        var db = _redis.Database;
        var checkpointTask = db.StringGetAsync(_redis.Key(sessionId, "cp"));
        var headTask = db.StringGetAsync(_redis.Key(sessionId, "seq"));
        var checkpoint = await checkpointTask.ConfigureAwait(false);
        var head = (long?)await headTask.ConfigureAwait(false) ?? 0;
        var log = NewLog();
        long from = 0;
        var restored = new List<(JsonObject Body, string? RunId)>();
        if (checkpoint.HasValue)
        {
            var text = (string)checkpoint!;
            var newline = text.IndexOf('\n', StringComparison.Ordinal);
            from = long.Parse(text.AsSpan(0, newline), CultureInfo.InvariantCulture);
            foreach (var item in JsonNode.Parse(text.AsSpan(newline + 1).ToString())!.AsArray().OfType<JsonObject>())
            {
                restored.Add(((JsonObject)item["e"]!.DeepClone(), (item["r"] as JsonValue)?.GetValue<string>()));
            }
        }

        // The events just before the checkpoint too (already in its projection), so a client resuming from a position
        // a little before it gets a replay rather than a snapshot.
        var historyFrom = Math.Max(1, from - _options.MaxReplayEvents + 1);
        var all = await db.StreamRangeAsync(_redis.Key(sessionId, "log"), $"{historyFrom}-0", "+").ConfigureAwait(false);
        var history = all.TakeWhile(e => RedisSessionProtocol.SeqOf(e.Id) <= from).Select(e => RedisSessionProtocol.Parse(e).Item1).ToList();
        var entries = all[history.Count..];
        var firstInLog = entries.Length > 0 ? RedisSessionProtocol.SeqOf(entries[0].Id) : head + 1;
        // Complete when the stream continues right after the checkpoint (or holds everything from the start).
        log.Restore(from, restored, complete: firstInLog == from + 1);
        if (history.Count > 0 && history[^1].Seq == from && history[^1].Seq - history[0].Seq == history.Count - 1)
        {
            log.RestoreHistory(history);
        }

        log.ApplyStored(entries.Select(RedisSessionProtocol.Parse).ToList());
        if (head > log.Head)
        {
            // Trimmed by age while nobody wrote: the positions are still the session's.
            log.Restore(head, [], log.Complete && entries.Length > 0);
        }

        if (atLeast > log.Head)
        {
            log.Restore(atLeast, [], log.Complete);
        }

        return log;
    }

    private sealed class Retention(Mirror mirror) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                mirror.Unhold();
                mirror.Release();
            }
        }
    }

    /// <summary>This node's copy of one session, and what it needs to keep it in step with Redis.</summary>
    private sealed class Mirror(string sessionId, SessionLog log)
    {
        private readonly Lock _lock = new();
        private readonly Queue<Pending> _buffered = new();
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

        public void Buffer(Pending pending)
        {
            _buffered.Enqueue(pending);
            Interlocked.Add(ref _bufferedCount, pending.Bodies.Length);
        }

        public Pending? PeekBuffered() => _buffered.TryPeek(out var pending) ? pending : null;

        public void DropBuffered()
        {
            var pending = _buffered.Dequeue();
            Interlocked.Add(ref _bufferedCount, -pending.Bodies.Length);
        }
    }
}
