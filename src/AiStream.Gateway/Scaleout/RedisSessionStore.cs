using System.Text.Json;
using System.Text.Json.Nodes;
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
/// <remarks>
/// This is the <see cref="ISessionStore"/> the services call; the work is done by its parts:
/// <see cref="SessionMirrors"/> (the mirrors), <see cref="StreamSync"/> (channel delivery, gap fill, catch-up),
/// <see cref="OutageBuffer"/> (writes while Redis is away), <see cref="SessionMaintenance"/> (the periodic pass),
/// <see cref="RedisSessionCommands"/> (the Redis commands) and <see cref="RedisSessionProtocol"/> (the wire format).
/// </remarks>
internal sealed class RedisSessionStore : ISessionStore, IDisposable
{
    private readonly RedisSessionCommands _commands;

    private readonly SessionMirrors _mirrors;

    private readonly StreamSync _sync;

    private readonly OutageBuffer _buffer;

    private readonly SessionMaintenance _maintenance;

    private readonly TimeProvider _time;

    private readonly ILogger<RedisSessionStore> _logger;

    public RedisSessionStore(RedisConnection redis, IOptions<SessionsOptions> options, IOptions<PresenceOptions> presence,
        IOptions<ScaleoutOptions> scaleout, TimeProvider time, ILogger<RedisSessionStore> logger, IEnumerable<ISessionEventSink>? sinks = null)
    {
        _time = time;
        _logger = logger;
        _commands = new RedisSessionCommands(redis, options.Value, time, presence.Value.SnapshotCap);
        _sync = new StreamSync(_commands, logger);
        Scripted = new ScriptedAppends([.. sinks ?? []]);
        _mirrors = new SessionMirrors(_commands, _sync, logger);
        _buffer = new OutageBuffer(_commands, _mirrors, _sync, scaleout.Value, time, logger);
        _maintenance = new SessionMaintenance(_commands, _mirrors, _sync, _buffer, scaleout.Value, time, logger, Scripted);
        // Messages published while this node's connection was down are never delivered: look for them at once.
        redis.Restored += () => _ = Task.Run(() => _maintenance.CatchUpAllAsync(CancellationToken.None));
    }

    /// <summary>Reports events Redis scripts logged outside <see cref="AppendAsync"/> (presence) to the event sinks.</summary>
    internal ScriptedAppends Scripted { get; }

    /// <summary>Lifetime of a session's keys after its last write or while watched (renewed by watchers).</summary>
    internal TimeSpan KeyTtl => _commands.KeyTtl;

    /// <summary>Sessions this node mirrors now.</summary>
    internal int MirrorCount => _mirrors.Count;

    /// <summary>Events waiting for Redis on this node.</summary>
    internal int BufferedEvents => _mirrors.BufferedEvents;

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

        if (_mirrors.Contains(sessionId) || buffered)
        {
            var mirror = await _mirrors.AcquireAsync(sessionId, create: true, buffered, cancellationToken).ConfigureAwait(false);
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
            var (first, last, replayed, _) = await _commands.AppendAsync(sessionId, bodies, runId, idempotencyKey, now, floor: 0, expected: -1).ConfigureAwait(false);
            return new AppendResult([], replayed, RedisSessionProtocol.Range(first, last));
        }
        catch (Exception ex) when (IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; retry the publish with the same Idempotency-Key.", ex);
        }
    }

    /// <summary>Appends through the mirror (one Lua script per batch), or into the outage buffer while Redis is away.</summary>
    private async Task<AppendResult> AppendThroughMirrorAsync(SessionMirror mirror, IReadOnlyList<JsonObject> objects, byte[][] bodies, string? runId, string? idempotencyKey,
        long now, bool buffered, CancellationToken cancellationToken)
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
                    var (first, last, replayed, _) = await _commands.AppendAsync(mirror.SessionId, bodies, runId, idempotencyKey, now, floor: mirror.Log.Head, expected: -1)
                        .ConfigureAwait(false);
                    if (replayed)
                    {
                        return new AppendResult([], true, RedisSessionProtocol.Range(first, last));
                    }

                    if (first > mirror.Log.Head + 1 && mirror.Loaded)
                    {
                        await _sync.FillAsync(mirror, first - 1).ConfigureAwait(false);
                    }

                    var stored = RedisSessionProtocol.Stored(objects, bodies, runId, now, first);
                    mirror.Log.ApplyStored(stored);
                    mirror.Touch();
                    return new AppendResult(stored.Select(e => e.Event).ToList(), false, RedisSessionProtocol.Range(first, last));
                }
                catch (Exception ex) when (IsRedisFailure(ex) && buffered)
                {
                    SessionStoreLog.Buffering(_logger, mirror.SessionId, ex.Message);
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

            // Redis is away: take the next positions here, deliver to local watchers now, write them later in order.
            return _buffer.Append(mirror, objects, bodies, runId, now);
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    public IDisposable Retain(string sessionId) => _mirrors.Retain(sessionId);

    public async ValueTask<SubscribeResult> SubscribeAsync(string sessionId, long? afterSeq, Subscriber subscriber, CancellationToken cancellationToken)
    {
        var mirror = await _mirrors.AcquireAsync(sessionId, create: true, buffered: false, cancellationToken).ConfigureAwait(false);
        try
        {
            if (afterSeq is { } after && after > mirror!.Log.Head)
            {
                // The client saw events on another node that this one has not received yet: fetch them first, so the
                // resume is a replay and not a snapshot that would repeat them.
                await _sync.CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
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
        if (_mirrors.TryGet(sessionId, out var mirror))
        {
            mirror.Log.Unsubscribe(subscriber);
        }
        else
        {
            subscriber.Close();
        }
    }

    public int Watchers(string sessionId) => _mirrors.TryGet(sessionId, out var mirror) ? mirror.Log.Watchers + mirror.RemoteWatchers : 0;

    public async ValueTask<IReadOnlyList<JsonObject>> MessagesAsync(string sessionId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log => log.Messages(), [], cancellationToken).ConfigureAwait(false);

    public async ValueTask<bool> HasMessageAsync(string sessionId, string messageId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log => log.HasMessage(messageId), false, cancellationToken).ConfigureAwait(false);

    public async ValueTask<JsonNode?> StateAsync(string sessionId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log => log.State(), new JsonObject(), cancellationToken).ConfigureAwait(false);

    public async ValueTask<SessionInfo> InfoAsync(string sessionId, CancellationToken cancellationToken) =>
        await ReadAsync(sessionId, log =>
        {
            var info = log.Info(sessionId);
            return info with { Watchers = Watchers(sessionId) };
        }, new SessionInfo(sessionId, 0, 1, 0, []), cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Writes this node's buffered events of a session, if it holds any, before another writer of this node (presence)
    /// appends to the same log. Throws the Redis failure when Redis is still away.
    /// </summary>
    internal Task FlushBufferedAsync(string sessionId, CancellationToken cancellationToken) => _buffer.FlushBufferedAsync(sessionId, cancellationToken);

    /// <summary>One maintenance pass (see <see cref="SessionMaintenance.MaintainAsync"/>).</summary>
    internal Task MaintainAsync(IReadOnlySet<string> liveNodes, CancellationToken cancellationToken) => _maintenance.MaintainAsync(liveNodes, cancellationToken);

    /// <summary>Ends a run registered to <paramref name="owner"/> with RUN_ERROR (and closes its open text). True when this call ended it.</summary>
    internal Task<bool> EndOrphanAsync(string sessionId, string runId, string owner, string code, string message) =>
        _maintenance.EndOrphanAsync(sessionId, runId, owner, code, message);

    private async Task<T> ReadAsync<T>(string sessionId, Func<SessionLog, T> read, T missing, CancellationToken cancellationToken)
    {
        try
        {
            if (!_mirrors.Contains(sessionId) && !await _commands.ExistsAsync(sessionId).ConfigureAwait(false))
            {
                return missing; // reading never creates a session
            }
        }
        catch (Exception ex) when (IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; try again shortly.", ex);
        }

        var mirror = await _mirrors.AcquireAsync(sessionId, create: true, buffered: false, cancellationToken).ConfigureAwait(false);
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

    public void Dispose() => _mirrors.Dispose();
}
