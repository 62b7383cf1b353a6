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

/// <summary>
/// Session logs shared by every node through Redis. Redis holds the truth: one stream per session, positions assigned
/// by a Lua script that appends and publishes in one step. A node keeps a <em>mirror</em> (a <see cref="SessionLog"/>)
/// of each session it watches or writes, fed in position order from the session's sharded channel, so it receives
/// only the sessions it serves. A position gap (a message missed while a connection was down) is filled from the
/// stream before anything is delivered; if the stream no longer has the events, watchers get a gap notice and a
/// fresh snapshot instead. While Redis is unreachable, events the gateway produces itself (runs, presence) reach local
/// watchers at once with the next positions and are written, in order, when Redis is back.
/// </summary>
internal sealed partial class RedisSessionStore : ISessionStore, IDisposable
{
    private readonly ConcurrentDictionary<string, Mirror> _mirrors = new(StringComparer.Ordinal);
    private readonly RedisConnection _redis;
    private readonly SessionsOptions _options;
    private readonly ScaleoutOptions _scaleout;
    private readonly int _presenceCap;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisSessionStore> _logger;

    public RedisSessionStore(RedisConnection redis, IOptions<SessionsOptions> options, IOptions<PresenceOptions> presence,
        IOptions<ScaleoutOptions> scaleout, TimeProvider time, ILogger<RedisSessionStore> logger)
    {
        _redis = redis;
        _options = options.Value;
        _scaleout = scaleout.Value;
        _presenceCap = presence.Value.SnapshotCap;
        _time = time;
        _logger = logger;
        // Messages published while this node's connection was down are never delivered: look for them at once.
        _redis.Restored += () => _ = Task.Run(() => CatchUpAllAsync(CancellationToken.None));
    }

    /// <summary>Lifetime of a session's keys after its last write or while watched (renewed by watchers).</summary>
    internal TimeSpan KeyTtl => TimeSpan.FromMinutes(Math.Max(_options.SessionIdleMinutes, _options.MaxEventAgeMinutes));

    /// <summary>Sessions this node mirrors now.</summary>
    internal int MirrorCount => _mirrors.Count;

    /// <summary>Events waiting for Redis on this node.</summary>
    internal int BufferedEvents => _mirrors.Values.Sum(m => m.BufferedCount);

    public async ValueTask<AppendResult> AppendAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey,
        CancellationToken cancellationToken, bool buffered = false)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var bodies = new byte[events.Count][];
        for (var i = 0; i < events.Count; i++)
        {
            if (events[i]["timestamp"] is not JsonValue ts || ts.GetValueKind() != JsonValueKind.Number)
            {
                events[i]["timestamp"] = now;
            }

            events[i].Remove("seq");
            bodies[i] = JsonSerializer.SerializeToUtf8Bytes(events[i], SessionsJsonContext.Default.JsonObject);
        }

        if (_mirrors.TryGetValue(sessionId, out var mirror) || buffered)
        {
            mirror = await AcquireAsync(sessionId, create: true, buffered, cancellationToken).ConfigureAwait(false);
            try
            {
                return await AppendThroughMirrorAsync(mirror!, events, bodies, runId, idempotencyKey, now, buffered, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                mirror!.Release();
            }
        }

        // Nobody here watches the session: write straight to Redis; nodes that watch it get it from the channel.
        try
        {
            var (first, last, replayed, _) = await RunAppendAsync(sessionId, bodies, runId, idempotencyKey, now, floor: 0, expected: -1).ConfigureAwait(false);
            return new AppendResult([], replayed, Range(first, last));
        }
        catch (Exception ex) when (IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; retry the publish with the same Idempotency-Key.", ex);
        }
    }

    public IDisposable Retain(string sessionId)
    {
        while (true)
        {
            var mirror = _mirrors.GetOrAdd(sessionId, id => new Mirror(id, NewLog()));
            if (mirror.Retain())
            {
                mirror.Hold();
                return new Retention(mirror);
            }
        }
    }

    public async ValueTask<SubscribeResult> SubscribeAsync(string sessionId, long? afterSeq, Subscriber subscriber, CancellationToken cancellationToken)
    {
        var mirror = await AcquireAsync(sessionId, create: true, buffered: false, cancellationToken).ConfigureAwait(false);
        try
        {
            if (afterSeq is { } after && after > mirror!.Log.Head)
            {
                // The client saw events on another node that this one has not received yet: fetch them first, so the
                // resume is a replay and not a snapshot that would repeat them.
                await CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
            }

            await mirror!.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var result = mirror.Log.Subscribe(afterSeq, subscriber);
                mirror.Touch();
                return result;
            }
            finally
            {
                mirror.Gate.Release();
            }
        }
        finally
        {
            mirror!.Release();
        }
    }

    public void Unsubscribe(string sessionId, Subscriber subscriber)
    {
        if (_mirrors.TryGetValue(sessionId, out var mirror))
        {
            mirror.Log.Unsubscribe(subscriber);
        }
        else
        {
            subscriber.Close();
        }
    }

    public int Watchers(string sessionId) => _mirrors.TryGetValue(sessionId, out var mirror) ? mirror.Log.Watchers + mirror.RemoteWatchers : 0;

    public async ValueTask<IReadOnlyList<JsonObject>> MessagesAsync(string sessionId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log => log.Messages(), [], cancellationToken).ConfigureAwait(false);

    public async ValueTask<bool> HasMessageAsync(string sessionId, string messageId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log => log.HasMessage(messageId), false, cancellationToken).ConfigureAwait(false);

    public async ValueTask<SessionInfo> InfoAsync(string sessionId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log =>
        {
            var info = log.Info(sessionId);
            return info with { Watchers = Watchers(sessionId) };
        }, new SessionInfo(sessionId, 0, 1, 0, []), cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// One maintenance pass, run every <see cref="ScaleoutOptions.MaintenanceSeconds"/> by every node: advertise this
    /// node's watchers, learn other nodes' watchers for local runs, pick up missed events, write checkpoints, flush
    /// buffered events, end runs whose node died, and forget sessions nobody here needs.
    /// </summary>
    internal async Task MaintainAsync(IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var idle = TimeSpan.FromSeconds(_scaleout.MirrorIdleSeconds);
        foreach (var mirror in _mirrors.Values)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            try
            {
                if (!mirror.Loaded)
                {
                    if (mirror.BufferedCount > 0 || mirror.Retained)
                    {
                        await EnsureLoadedAsync(mirror, cancellationToken).ConfigureAwait(false);
                    }
                    else if (mirror.IsUnused(idle))
                    {
                        Forget(mirror);
                    }

                    if (!mirror.Loaded)
                    {
                        continue;
                    }
                }

                if (mirror.BufferedCount > 0)
                {
                    await FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
                }

                await AdvertiseAsync(mirror, now).ConfigureAwait(false);
                await CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
                await CheckpointAsync(mirror, now, force: false).ConfigureAwait(false);
                await EndOrphansAsync(mirror, liveNodes).ConfigureAwait(false);
                if (mirror.IsUnused(idle) && mirror.BufferedCount == 0)
                {
                    Forget(mirror);
                    if (mirror.Advertised)
                    {
                        await _redis.Database.SortedSetRemoveAsync(_redis.Key(mirror.SessionId, "w"), _redis.NodeId).ConfigureAwait(false);
                    }

                    if (mirror.Queue is { } queue)
                    {
                        await queue.UnsubscribeAsync().ConfigureAwait(false);
                    }
                }
            }
            catch (Exception ex) when (IsRedisFailure(ex))
            {
                // Redis is away; the next pass tries again.
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.MaintenanceFailed(_logger, mirror.SessionId, ex);
            }
        }
    }

    private void Forget(Mirror mirror)
    {
        if (mirror.TryRemove() && _mirrors.TryRemove(new KeyValuePair<string, Mirror>(mirror.SessionId, mirror)))
        {
            Log.MirrorForgotten(_logger, mirror.SessionId);
        }
    }

    private async Task<Mirror?> AcquireAsync(string sessionId, bool create, bool buffered, CancellationToken cancellationToken)
    {
        while (true)
        {
            Mirror? mirror;
            if (create)
            {
                mirror = _mirrors.GetOrAdd(sessionId, id => new Mirror(id, NewLog()));
            }
            else if (!_mirrors.TryGetValue(sessionId, out mirror))
            {
                return null;
            }

            if (!mirror.Retain())
            {
                continue; // forgotten meanwhile: take the fresh one
            }

            try
            {
                await EnsureLoadedAsync(mirror, cancellationToken).ConfigureAwait(false);
                return mirror;
            }
            catch (Exception ex) when (IsRedisFailure(ex))
            {
                if (buffered)
                {
                    // A run or presence change on a session this node cannot load: it starts from an empty mirror and
                    // its events are written when Redis is back (the first of them say where the session really is).
                    return mirror;
                }

                mirror.Release();
                throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; try again shortly.", ex);
            }
            catch
            {
                mirror.Release();
                throw;
            }
        }
    }

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
        var history = all.TakeWhile(e => SeqOf(e.Id) <= from).Select(e => Parse(e).Item1).ToList();
        var entries = all[history.Count..];
        var firstInLog = entries.Length > 0 ? SeqOf(entries[0].Id) : head + 1;
        // Complete when the stream continues right after the checkpoint (or holds everything from the start).
        log.Restore(from, restored, complete: firstInLog == from + 1);
        if (history.Count > 0 && history[^1].Seq == from && history[^1].Seq - history[0].Seq == history.Count - 1)
        {
            log.RestoreHistory(history);
        }

        log.ApplyStored(entries.Select(Parse).ToList());
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

    private async Task ReadChannelAsync(Mirror mirror, ChannelMessageQueue queue)
    {
        try
        {
            while (true)
            {
                var message = await queue.ReadAsync().ConfigureAwait(false);
                byte[] payload = message.Message!;
                try
                {
                    await DeliverAsync(mirror, payload).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not ChannelClosedException)
                {
                    Log.DeliveryFailed(_logger, mirror.SessionId, ex);
                }
            }
        }
        catch (Exception ex) when (ex is ChannelClosedException or OperationCanceledException)
        {
            // Unsubscribed: the mirror was forgotten.
        }
    }

    /// <summary>Delivers a published batch in position order, filling any gap from the stream first.</summary>
    private async Task DeliverAsync(Mirror mirror, byte[] payload)
    {
        // The header alone says whether the batch is new: this node's own writes come back here too, and are dropped
        // without copying or parsing their events.
        var (first, runId, appendedAt, count, bodiesAt) = ReadHeader(payload);
        var last = first + count - 1;
        if (last <= mirror.Log.Head)
        {
            return; // already here (this node wrote it, or a gap fill fetched it)
        }

        await mirror.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (last <= mirror.Log.Head || !mirror.Loaded)
            {
                return;
            }

            if (mirror.BufferedCount > 0)
            {
                // Someone else wrote while this node could not: the flush reconciles (and resets watchers if needed).
                mirror.Conflict = true;
                return;
            }

            if (first > mirror.Log.Head + 1 && !await FillAsync(mirror, first - 1).ConfigureAwait(false))
            {
                return;
            }

            var bodies = ReadBodies(payload, bodiesAt);
            var events = new List<(SessionEvent, JsonObject)>(bodies.Count);
            for (var i = 0; i < bodies.Count; i++)
            {
                if (first + i > mirror.Log.Head)
                {
                    events.Add(SessionEvent.FromStored(bodies[i], first + i, runId, appendedAt));
                }
            }

            mirror.Log.ApplyStored(events);
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>Reads the positions after the mirror's head up to <paramref name="to"/> from the stream. Gate held.</summary>
    private async Task<bool> FillAsync(Mirror mirror, long to)
    {
        var from = mirror.Log.Head + 1;
        var entries = await _redis.Database.StreamRangeAsync(_redis.Key(mirror.SessionId, "log"), $"{from}-0", to == long.MaxValue ? "+" : $"{to}-0").ConfigureAwait(false);
        if (entries.Length == 0 && to == long.MaxValue)
        {
            return true;
        }

        if (entries.Length == 0 || SeqOf(entries[0].Id) != from)
        {
            // The stream no longer has them (trimmed, or Redis lost its data): never skip silently.
            await ResetAsync(mirror, "gap", $"Events after position {from - 1} are no longer in the shared log.").ConfigureAwait(false);
            return false;
        }

        mirror.Log.ApplyStored(entries.Select(Parse).ToList());
        return true;
    }

    /// <summary>Replaces the mirror with Redis's state; its watchers get a gap notice and a fresh snapshot. Gate held.</summary>
    private async Task ResetAsync(Mirror mirror, string reason, string message)
    {
        var fresh = await LoadAsync(mirror.SessionId, mirror.Log.Head).ConfigureAwait(false);
        Log.Reset(_logger, mirror.SessionId, reason, mirror.Log.Head, fresh.Head);
        fresh.TakeOver(mirror.Log, AgUi.Event(AgUi.Custom, ("name", "stream.gap"), ("value", new JsonObject
        {
            ["reason"] = reason,
            ["message"] = message,
            ["resumeAfter"] = fresh.Head,
        })));
        mirror.Log = fresh;
        mirror.CheckpointSeq = 0;
    }

    private async Task CatchUpAsync(Mirror mirror, CancellationToken cancellationToken)
    {
        if (!mirror.Loaded || mirror.BufferedCount > 0)
        {
            return;
        }

        var head = (long?)await _redis.Database.StringGetAsync(_redis.Key(mirror.SessionId, "seq")).ConfigureAwait(false) ?? 0;
        if (head <= mirror.Log.Head)
        {
            return;
        }

        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (head > mirror.Log.Head && mirror.BufferedCount == 0)
            {
                await FillAsync(mirror, long.MaxValue).ConfigureAwait(false);
            }
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>
    /// After a reconnect: if Redis came back without its data, put back what this node knows (each session's position
    /// and a checkpoint of its state), then write buffered events and pick up what was missed.
    /// </summary>
    private async Task CatchUpAllAsync(CancellationToken cancellationToken)
    {
        foreach (var mirror in _mirrors.Values)
        {
            try
            {
                if (mirror.BufferedCount > 0)
                {
                    await FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
                }
                else if (mirror.Loaded && mirror.Log.Head > 0)
                {
                    var raised = (long)await _redis.Database.ScriptEvaluateAsync(RedisScripts.RaiseFloor, [_redis.Key(mirror.SessionId, "seq")],
                        [mirror.Log.Head, (long)KeyTtl.TotalMilliseconds]).ConfigureAwait(false);
                    if (raised == 1)
                    {
                        Log.Repaired(_logger, mirror.SessionId, mirror.Log.Head);
                        mirror.CheckpointSeq = 0;
                        await CheckpointAsync(mirror, _time.GetUtcNow(), force: true).ConfigureAwait(false);
                    }
                }

                await CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsRedisFailure(ex))
            {
                return;
            }
        }
    }

    private async Task<AppendResult> AppendThroughMirrorAsync(Mirror mirror, IReadOnlyList<JsonObject> objects, byte[][] bodies, string? runId, string? idempotencyKey, long now, bool buffered,
        CancellationToken cancellationToken)
    {
        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Before Redis stores anything: a batch that would take the state past its limits is refused here. (Every
            // node also skips such an event when it applies the log, so a racing writer cannot poison the session.)
            mirror.Log.CheckState(objects);
            if (mirror.BufferedCount == 0)
            {
                try
                {
                    var (first, last, replayed, _) = await RunAppendAsync(mirror.SessionId, bodies, runId, idempotencyKey, now, floor: mirror.Log.Head, expected: -1)
                        .ConfigureAwait(false);
                    if (replayed)
                    {
                        return new AppendResult([], true, Range(first, last));
                    }

                    if (first > mirror.Log.Head + 1 && mirror.Loaded)
                    {
                        await FillAsync(mirror, first - 1).ConfigureAwait(false);
                    }

                    var stored = Stored(objects, bodies, runId, now, first);
                    mirror.Log.ApplyStored(stored);
                    mirror.Touch();
                    return new AppendResult(stored.Select(e => e.Event).ToList(), false, Range(first, last));
                }
                catch (Exception ex) when (IsRedisFailure(ex) && buffered)
                {
                    Log.Buffering(_logger, mirror.SessionId, ex.Message);
                }
                catch (Exception ex) when (IsRedisFailure(ex))
                {
                    throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; retry the publish with the same Idempotency-Key.", ex);
                }
            }
            else if (!buffered)
            {
                throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; retry the publish with the same Idempotency-Key.");
            }

            if (mirror.BufferedCount + bodies.Length > _scaleout.MaxBufferedEvents)
            {
                throw new SessionStoreUnavailableException($"Redis has been unreachable for too long: more than {_scaleout.MaxBufferedEvents} events are buffered for this session.");
            }

            // Redis is away: take the next positions here, deliver to local watchers now, write them later in order.
            var firstLocal = mirror.Log.Head + 1;
            var pending = Stored(objects, bodies, runId, now, firstLocal);
            mirror.Buffer(new Pending(bodies, runId, now, firstLocal));
            mirror.Log.ApplyStored(pending);
            mirror.Touch();
            return new AppendResult(pending.Select(e => e.Event).ToList(), false, Range(firstLocal, firstLocal + bodies.Length - 1));
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>
    /// Writes this node's buffered events of a session, if it holds any, before another writer of this node (presence)
    /// appends to the same log: otherwise that append would take the positions the buffered events were delivered with.
    /// Throws the Redis failure when Redis is still away.
    /// </summary>
    internal async Task FlushBufferedAsync(string sessionId, CancellationToken cancellationToken)
    {
        if (_mirrors.TryGetValue(sessionId, out var mirror) && mirror.BufferedCount > 0)
        {
            await FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes events buffered while Redis was away, in order, at the positions they were delivered with. If Redis moved
    /// on meanwhile (another node wrote), they are written after what is there and this node's watchers are reset.
    /// </summary>
    private async Task FlushAsync(Mirror mirror, CancellationToken cancellationToken)
    {
        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var moved = mirror.Conflict;
            while (mirror.PeekBuffered() is { } pending)
            {
                var expected = pending.FirstSeq - 1;
                long first;
                bool conflict;
                try
                {
                    (first, _, _, conflict) = await RunAppendAsync(mirror.SessionId, pending.Bodies, pending.RunId, null, pending.AppendedAt,
                        floor: moved ? 0 : expected, expected: moved ? -1 : expected).ConfigureAwait(false);
                }
                catch (RunFencedException)
                {
                    // The run was declared lost while this node could not reach Redis: its buffered events are not
                    // the session's; this node's watchers are reset to what the log really holds.
                    mirror.DropBuffered();
                    moved = true;
                    continue;
                }

                if (conflict)
                {
                    if (await AlreadyWrittenAsync(mirror.SessionId, pending).ConfigureAwait(false))
                    {
                        mirror.DropBuffered();
                        continue; // an earlier attempt got through but its answer was lost
                    }

                    moved = true;
                    continue;
                }

                mirror.DropBuffered();
                Log.Flushed(_logger, mirror.SessionId, pending.Bodies.Length, first);
            }

            mirror.Conflict = false;
            if (moved)
            {
                await ResetAsync(mirror, "diverged", "Events were written elsewhere while this node could not reach Redis; positions were reassigned.").ConfigureAwait(false);
            }
            else
            {
                mirror.Loaded = true;
                await CheckpointAsync(mirror, _time.GetUtcNow(), force: true).ConfigureAwait(false);
            }
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    private async Task<bool> AlreadyWrittenAsync(string sessionId, Pending pending)
    {
        var entries = await _redis.Database.StreamRangeAsync(_redis.Key(sessionId, "log"), $"{pending.FirstSeq}-0", $"{pending.FirstSeq}-0").ConfigureAwait(false);
        return entries.Length == 1 && ((byte[])entries[0]["e"]!).AsSpan().SequenceEqual(WithSeq(pending.Bodies[0], pending.FirstSeq));
    }

    private async Task AdvertiseAsync(Mirror mirror, DateTimeOffset now)
    {
        var db = _redis.Database;
        var watchers = _redis.Key(mirror.SessionId, "w");
        var localWatchers = mirror.Log.Watchers;
        var ttl = KeyTtl;
        if (localWatchers > 0)
        {
            var until = (now + TimeSpan.FromSeconds(_scaleout.NodeTimeoutSeconds)).ToUnixTimeMilliseconds();
            _ = db.SortedSetAddAsync(watchers, _redis.NodeId, until, CommandFlags.FireAndForget);
            // Watched sessions stay in Redis however long nobody writes.
            foreach (var name in (string[])["seq", "log", "cp", "w"])
            {
                _ = db.KeyExpireAsync(_redis.Key(mirror.SessionId, name), ttl, CommandFlags.FireAndForget);
            }

            mirror.Advertised = true;
        }
        else if (mirror.Advertised)
        {
            mirror.Advertised = false;
            await db.SortedSetRemoveAsync(watchers, _redis.NodeId).ConfigureAwait(false);
        }

        if (mirror.Retained)
        {
            // A run here: count watchers on other nodes, for idle-cancel.
            var live = await db.SortedSetRangeByScoreAsync(watchers, now.ToUnixTimeMilliseconds(), double.PositiveInfinity).ConfigureAwait(false);
            mirror.RemoteWatchers = live.Count(n => n != _redis.NodeId);
        }
    }

    private async Task CheckpointAsync(Mirror mirror, DateTimeOffset now, bool force)
    {
        var every = Math.Max(16, _options.MaxEvents / 4);
        var head = mirror.Log.Head;
        var stale = now - mirror.CheckpointAt > TimeSpan.FromMinutes(_options.MaxEventAgeMinutes / 4);
        if (!mirror.Log.Complete || head <= mirror.CheckpointSeq || (!force && head - mirror.CheckpointSeq < every && !stale))
        {
            return;
        }

        var (seq, events) = mirror.Log.Checkpoint();
        var array = new JsonArray();
        foreach (var (body, runId) in events)
        {
            var item = new JsonObject { ["e"] = body };
            if (runId is not null)
            {
                item["r"] = runId;
            }

            array.Add(item);
        }

        var value = seq.ToString(CultureInfo.InvariantCulture) + "\n" + array.ToJsonString();
        await _redis.Database.ScriptEvaluateAsync(RedisScripts.SaveCheckpoint, [_redis.Key(mirror.SessionId, "cp")],
            [seq, value, (long)KeyTtl.TotalMilliseconds]).ConfigureAwait(false);
        mirror.CheckpointSeq = seq;
        mirror.CheckpointAt = now;
    }

    /// <summary>Ends runs the log shows active whose node is gone: their watchers would otherwise wait forever.</summary>
    private async Task EndOrphansAsync(Mirror mirror, IReadOnlySet<string> liveNodes)
    {
        var active = mirror.Log.ActiveRuns();
        if (active.Count == 0)
        {
            return;
        }

        var runs = _redis.Key(mirror.SessionId, "runs");
        foreach (var runId in active)
        {
            var owner = (string?)await _redis.Database.HashGetAsync(runs, runId).ConfigureAwait(false);
            if (owner is null or RedisRunControl.Ended || owner == _redis.NodeId || liveNodes.Contains(owner))
            {
                continue;
            }

            if (await EndOrphanAsync(mirror.SessionId, runId, owner, "node_lost", $"The node running this run ({owner}) stopped answering.").ConfigureAwait(false))
            {
                Log.OrphanEnded(_logger, mirror.SessionId, runId, owner);
            }
        }
    }

    /// <summary>Ends a run registered to <paramref name="owner"/> with RUN_ERROR (and closes its open text). True when this call ended it.</summary>
    internal async Task<bool> EndOrphanAsync(string sessionId, string runId, string owner, string code, string message)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var events = new List<JsonObject>();
        if (_mirrors.TryGetValue(sessionId, out var mirror))
        {
            events.AddRange(mirror.Log.OpenMessages(runId).Select(id => AgUi.Event(AgUi.TextMessageEnd, ("messageId", id))));
        }

        events.Add(AgUi.Event(AgUi.RunError, ("message", message), ("code", code), ("runId", runId)));
        var args = new List<RedisValue> { _redis.Channel(sessionId).ToString(), runId, now, _options.MaxEvents, Cutoff(now), (long)KeyTtl.TotalMilliseconds, owner, _options.MaxLogBytes };
        foreach (var e in events)
        {
            e["timestamp"] = now;
            args.Add(JsonSerializer.SerializeToUtf8Bytes(e, SessionsJsonContext.Default.JsonObject));
        }

        var ended = (long)await _redis.Database.ScriptEvaluateAsync(RedisScripts.EndOrphan,
            [_redis.Key(sessionId, "seq"), _redis.Key(sessionId, "log"), _redis.Key(sessionId, "runs"), _redis.Key(sessionId, "lb")], [.. args]).ConfigureAwait(false);
        return ended == 1;
    }

    private async Task<(long First, long Last, bool Replayed, bool Conflict)> RunAppendAsync(string sessionId, byte[][] bodies, string? runId, string? idempotencyKey,
        long now, long floor, long expected)
    {
        var args = new RedisValue[11 + bodies.Length];
        args[0] = _redis.Channel(sessionId).ToString();
        args[1] = runId ?? string.Empty;
        args[2] = now;
        args[3] = _options.MaxEvents;
        args[4] = Cutoff(now);
        args[5] = (long)KeyTtl.TotalMilliseconds;
        args[6] = floor;
        args[7] = expected;
        args[8] = idempotencyKey is null ? 0 : (long)TimeSpan.FromMinutes(_options.IdempotencyKeyMinutes).TotalMilliseconds;
        // Events of a run are written only while this process owns the run (see RedisScripts.AppendEvents).
        args[9] = runId is null ? string.Empty : _redis.NodeId;
        args[10] = _options.MaxLogBytes;
        for (var i = 0; i < bodies.Length; i++)
        {
            args[11 + i] = bodies[i];
        }

        var idem = idempotencyKey is null ? _redis.Key(sessionId, "seq") : _redis.Key(sessionId, "idem:" + idempotencyKey);
        var reply = (RedisResult[])(await _redis.Database.ScriptEvaluateAsync(RedisScripts.AppendEvents,
            [_redis.Key(sessionId, "seq"), _redis.Key(sessionId, "log"), idem, _redis.Key(sessionId, "runs"), _redis.Key(sessionId, "lb")], args).ConfigureAwait(false))!;
        var status = (long)reply[0];
        if (status == -2)
        {
            throw new RunFencedException($"Run '{runId}' of session '{sessionId}' was ended by another node; this node may no longer write it.");
        }

        if (status == -1)
        {
            var range = ((string)reply[1]!).Split(':');
            return (long.Parse(range[0], CultureInfo.InvariantCulture), long.Parse(range[1], CultureInfo.InvariantCulture), true, false);
        }

        return ((long)reply[0], (long)reply[1], false, (long)reply[2] == 1);
    }

    private long Cutoff(long now) => now - (long)TimeSpan.FromMinutes(_options.MaxEventAgeMinutes).TotalMilliseconds;

    /// <summary>The appended events as the log stores them, built from the bodies this writer already holds (no re-parse).</summary>
    private static List<(SessionEvent Event, JsonObject Body)> Stored(IReadOnlyList<JsonObject> objects, byte[][] bodies, string? runId, long now, long first)
    {
        var stored = new List<(SessionEvent Event, JsonObject Body)>(bodies.Length);
        for (var i = 0; i < bodies.Length; i++)
        {
            stored.Add(SessionEvent.FromStored(WithSeq(bodies[i], first + i), objects[i], first + i, runId, now));
        }

        return stored;
    }

    private static long[] Range(long first, long last) => first <= 0 ? [] : Enumerable.Range(0, (int)(last - first + 1)).Select(i => first + i).ToArray();

    /// <summary>The bytes the script stores: the body with <c>,"seq":N</c> before its closing brace.</summary>
    private static byte[] WithSeq(byte[] body, long seq)
    {
        var suffix = Encoding.ASCII.GetBytes(",\"seq\":" + seq.ToString(CultureInfo.InvariantCulture) + "}");
        var json = new byte[body.Length - 1 + suffix.Length];
        body.AsSpan(0, body.Length - 1).CopyTo(json);
        suffix.CopyTo(json.AsSpan(body.Length - 1));
        return json;
    }

    /// <summary>A published batch's header (<c>firstSeq\nrunId\nappendedAt\n</c>), how many events follow and where.</summary>
    private static (long First, string? RunId, long AppendedAt, int Count, int BodiesAt) ReadHeader(byte[] payload)
    {
        var span = payload.AsSpan();
        var firstEnd = span.IndexOf((byte)'\n');
        var runEnd = firstEnd + 1 + span[(firstEnd + 1)..].IndexOf((byte)'\n');
        var atEnd = runEnd + 1 + span[(runEnd + 1)..].IndexOf((byte)'\n');
        var bodiesAt = atEnd + 1;
        var runId = runEnd == firstEnd + 1 ? null : Encoding.UTF8.GetString(span[(firstEnd + 1)..runEnd]);
        return (long.Parse(span[..firstEnd], CultureInfo.InvariantCulture), runId, long.Parse(span[(runEnd + 1)..atEnd], CultureInfo.InvariantCulture),
            span[bodiesAt..].Count((byte)'\n') + 1, bodiesAt);
    }

    /// <summary>The events of a published batch, one per line after the header.</summary>
    private static List<byte[]> ReadBodies(byte[] payload, int bodiesAt)
    {
        var bodies = new List<byte[]>();
        foreach (var range in payload.AsSpan(bodiesAt).Split((byte)'\n'))
        {
            bodies.Add(payload.AsSpan(bodiesAt)[range].ToArray());
        }

        return bodies;
    }

    private static (SessionEvent, JsonObject) Parse(StreamEntry entry)
    {
        var runId = (string?)entry["r"];
        return SessionEvent.FromStored((byte[])entry["e"]!, SeqOf(entry.Id), string.IsNullOrEmpty(runId) ? null : runId, (long)entry["t"]);
    }

    private static long SeqOf(RedisValue id)
    {
        var text = (string)id!;
        return long.Parse(text.AsSpan(0, text.IndexOf('-', StringComparison.Ordinal)), CultureInfo.InvariantCulture);
    }

    private async Task<T> ReadAsync<T>(string sessionId, Func<SessionLog, T> read, T missing, CancellationToken cancellationToken)
    {
        try
        {
            if (!_mirrors.ContainsKey(sessionId)
                && !await _redis.Database.KeyExistsAsync(_redis.Key(sessionId, "seq")).ConfigureAwait(false))
            {
                return missing; // reading never creates a session
            }
        }
        catch (Exception ex) when (IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; try again shortly.", ex);
        }

        var mirror = await AcquireAsync(sessionId, create: true, buffered: false, cancellationToken).ConfigureAwait(false);
        try
        {
            return read(mirror!.Log);
        }
        finally
        {
            mirror!.Release();
        }
    }

    /// <summary>Redis is unreachable or not serving yet (as opposed to a bug in a script).</summary>
    internal static bool IsRedisFailure(Exception ex) => ex switch
    {
        RedisConnectionException or RedisTimeoutException or ObjectDisposedException => true,
        RedisServerException server => server.Message.StartsWith("LOADING", StringComparison.Ordinal)
            || server.Message.StartsWith("CLUSTERDOWN", StringComparison.Ordinal) || server.Message.StartsWith("TRYAGAIN", StringComparison.Ordinal)
            || server.Message.StartsWith("MASTERDOWN", StringComparison.Ordinal) || server.Message.StartsWith("READONLY", StringComparison.Ordinal),
        _ => false,
    };

    private SessionLog NewLog() => new(_options, _time, _presenceCap);

    public void Dispose()
    {
        foreach (var mirror in _mirrors.Values)
        {
            mirror.Queue?.Unsubscribe();
        }
    }

    private sealed record Pending(byte[][] Bodies, string? RunId, long AppendedAt, long FirstSeq);

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

    private static partial class Log
    {
        [LoggerMessage(EventId = 8101, Level = LogLevel.Warning, Message = "Redis unreachable ({Reason}); buffering events of session {SessionId} and delivering them locally")]
        public static partial void Buffering(ILogger logger, string sessionId, string reason);

        [LoggerMessage(EventId = 8102, Level = LogLevel.Information, Message = "Wrote {Count} buffered events of session {SessionId} to Redis from position {First}")]
        public static partial void Flushed(ILogger logger, string sessionId, int count, long first);

        [LoggerMessage(EventId = 8103, Level = LogLevel.Warning, Message = "Session {SessionId} reset ({Reason}): local head {LocalHead}, shared head {SharedHead}; watchers get a gap notice and a snapshot")]
        public static partial void Reset(ILogger logger, string sessionId, string reason, long localHead, long sharedHead);

        [LoggerMessage(EventId = 8104, Level = LogLevel.Warning, Message = "Run {RunId} of session {SessionId} was ended: its node {Owner} is gone")]
        public static partial void OrphanEnded(ILogger logger, string sessionId, string runId, string owner);

        [LoggerMessage(EventId = 8105, Level = LogLevel.Error, Message = "Could not deliver an event of session {SessionId}")]
        public static partial void DeliveryFailed(ILogger logger, string sessionId, Exception exception);

        [LoggerMessage(EventId = 8106, Level = LogLevel.Warning, Message = "Maintenance of session {SessionId} failed")]
        public static partial void MaintenanceFailed(ILogger logger, string sessionId, Exception exception);

        [LoggerMessage(EventId = 8108, Level = LogLevel.Warning, Message = "Redis came back without session {SessionId}; restored its position ({Head}) and a checkpoint from this node")]
        public static partial void Repaired(ILogger logger, string sessionId, long head);

        [LoggerMessage(EventId = 8107, Level = LogLevel.Debug, Message = "Session {SessionId} is no longer needed on this node")]
        public static partial void MirrorForgotten(ILogger logger, string sessionId);
    }
}
