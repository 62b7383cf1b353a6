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
            return new AppendResult([], replayed, RedisSessionProtocol.Range(first, last));
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
}
