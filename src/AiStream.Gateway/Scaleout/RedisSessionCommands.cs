using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>The Redis commands of the session store: the append and end-orphan scripts, loading a session, reading its stream, checkpoints.</summary>
internal sealed class RedisSessionCommands(RedisConnection redis, SessionsOptions options, TimeProvider time, int presenceCap)
{
    public RedisConnection Redis => redis;

    public SessionsOptions Options => options;

    /// <summary>Lifetime of a session's keys after its last write or while watched (renewed by watchers).</summary>
    public TimeSpan KeyTtl => TimeSpan.FromMinutes(Math.Max(options.SessionIdleMinutes, options.MaxEventAgeMinutes));

    /// <summary>A fresh, empty log for a session.</summary>
    public SessionLog NewLog() => new(options, time, presenceCap);

    /// <summary>Runs <see cref="RedisScripts.AppendEvents"/>; throws <see cref="RunFencedException"/> when the run may no longer be written.</summary>
    public async Task<(long First, long Last, bool Replayed, bool Conflict)> AppendAsync(string sessionId, byte[][] bodies, string? runId, string? idempotencyKey,
        long now, long floor, long expected)
    {
        // Events of a run are written only while this process owns the run (see RedisScripts.AppendEvents).
        var args = RedisSessionProtocol.AppendArguments(redis.Channel(sessionId), options, KeyTtl, bodies, runId, idempotencyKey is not null,
            runId is null ? string.Empty : redis.NodeId, now, floor, expected);
        var idem = idempotencyKey is null ? redis.Key(sessionId, "seq") : redis.Key(sessionId, "idem:" + idempotencyKey);
        var reply = (RedisResult[])(await redis.Database.ScriptEvaluateAsync(RedisScripts.AppendEvents,
            [redis.Key(sessionId, "seq"), redis.Key(sessionId, "log"), idem, redis.Key(sessionId, "runs"), redis.Key(sessionId, "lb")], args).ConfigureAwait(false))!;
        var (first, last, replayed, conflict, fenced) = RedisSessionProtocol.ReadAppendReply(reply);
        if (fenced)
        {
            throw new RunFencedException($"Run '{runId}' of session '{sessionId}' was ended by another node; this node may no longer write it.");
        }

        return (first, last, replayed, conflict);
    }

    /// <summary>
    /// Runs <see cref="RedisScripts.EndOrphan"/> with <paramref name="events"/> (timestamped now). The first position
    /// appended when this call ended the run, else 0.
    /// </summary>
    public async Task<long> EndOrphanAsync(string sessionId, string runId, string owner, List<JsonObject> events)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var bodies = new List<byte[]>(events.Count);
        foreach (var e in events)
        {
            e["timestamp"] = now;
            bodies.Add(JsonSerializer.SerializeToUtf8Bytes(e, SessionsJsonContext.Default.JsonObject));
        }

        var args = RedisSessionProtocol.EndOrphanArguments(redis.Channel(sessionId), options, KeyTtl, runId, owner, now, bodies);
        return (long)await redis.Database.ScriptEvaluateAsync(RedisScripts.EndOrphan,
            [redis.Key(sessionId, "seq"), redis.Key(sessionId, "log"), redis.Key(sessionId, "runs"), redis.Key(sessionId, "lb")], args).ConfigureAwait(false);
    }

    /// <summary>Whether Redis has the session (its position counter).</summary>
    public Task<bool> ExistsAsync(string sessionId) => redis.Database.KeyExistsAsync(redis.Key(sessionId, "seq"));

    /// <summary>The last position Redis assigned in the session (0 when none).</summary>
    public async Task<long> HeadAsync(string sessionId) => (long?)await redis.Database.StringGetAsync(redis.Key(sessionId, "seq")).ConfigureAwait(false) ?? 0;

    /// <summary>The stream entries from position <paramref name="from"/> to <paramref name="to"/> (<see cref="long.MaxValue"/>: the end).</summary>
    public Task<StreamEntry[]> RangeAsync(string sessionId, long from, long to) =>
        redis.Database.StreamRangeAsync(redis.Key(sessionId, "log"), $"{from}-0", to == long.MaxValue ? "+" : $"{to}-0");

    /// <summary>Raises the session's position counter to <paramref name="head"/> (Redis lost its data). True when it raised it.</summary>
    public async Task<bool> RaiseFloorAsync(string sessionId, long head) =>
        (long)await redis.Database.ScriptEvaluateAsync(RedisScripts.RaiseFloor, [redis.Key(sessionId, "seq")],
            [head, (long)KeyTtl.TotalMilliseconds]).ConfigureAwait(false) == 1;

    /// <summary>Whether the first event of a buffered batch is already in the stream at its position (an earlier flush got through).</summary>
    public async Task<bool> AlreadyWrittenAsync(string sessionId, BufferedAppend pending)
    {
        var entries = await RangeAsync(sessionId, pending.FirstSeq, pending.FirstSeq).ConfigureAwait(false);
        return entries.Length == 1 && ((byte[])entries[0]["e"]!).AsSpan().SequenceEqual(RedisSessionProtocol.WithSeq(pending.Bodies[0], pending.FirstSeq));
    }

    /// <summary>Builds a session's state from Redis: its checkpoint, then the stream after it.</summary>
    public async Task<SessionLog> LoadAsync(string sessionId, long atLeast)
    {
        var db = redis.Database;
        var checkpointTask = db.StringGetAsync(redis.Key(sessionId, "cp"));
        var headTask = db.StringGetAsync(redis.Key(sessionId, "seq"));
        var checkpoint = await checkpointTask.ConfigureAwait(false);
        var head = (long?)await headTask.ConfigureAwait(false) ?? 0;
        var log = NewLog();
        long from = 0;
        var restored = new List<(JsonObject Body, string? RunId)>();
        if (checkpoint.HasValue)
        {
            (from, restored) = RedisSessionProtocol.ParseCheckpoint((string)checkpoint!);
        }

        // The events just before the checkpoint too (already in its projection), so a client resuming from a position
        // a little before it gets a replay rather than a snapshot.
        var historyFrom = Math.Max(1, from - options.MaxReplayEvents + 1);
        var all = await RangeAsync(sessionId, historyFrom, long.MaxValue).ConfigureAwait(false);
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

    /// <summary>
    /// Writes a checkpoint of the mirror's state when it is due (every quarter of <c>MaxEvents</c> events, or a quarter
    /// of <c>MaxEventAgeMinutes</c>), or whenever it moved on if <paramref name="force"/>d.
    /// </summary>
    public async Task CheckpointAsync(SessionMirror mirror, DateTimeOffset now, bool force)
    {
        var every = Math.Max(16, options.MaxEvents / 4);
        var head = mirror.Log.Head;
        var stale = now - mirror.CheckpointAt > TimeSpan.FromMinutes(options.MaxEventAgeMinutes / 4);
        if (!mirror.Log.Complete || head <= mirror.CheckpointSeq || (!force && head - mirror.CheckpointSeq < every && !stale))
        {
            return;
        }

        var (seq, events) = mirror.Log.Checkpoint();
        var value = RedisSessionProtocol.FormatCheckpoint(seq, events);
        await redis.Database.ScriptEvaluateAsync(RedisScripts.SaveCheckpoint, [redis.Key(mirror.SessionId, "cp")],
            [seq, value, (long)KeyTtl.TotalMilliseconds]).ConfigureAwait(false);
        mirror.CheckpointSeq = seq;
        mirror.CheckpointAt = now;
    }
}
