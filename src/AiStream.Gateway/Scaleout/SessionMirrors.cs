using System.Collections.Concurrent;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Scaleout;

/// <summary>The mirrors: this node's copy of each session it serves, loaded from the checkpoint and the stream, and kept while retained or watched.</summary>
internal sealed class SessionMirrors(RedisSessionCommands commands, StreamSync sync, ILogger logger) : IDisposable
{
    private readonly ConcurrentDictionary<string, SessionMirror> _mirrors = new(StringComparer.Ordinal);

    /// <summary>Sessions this node mirrors now.</summary>
    public int Count => _mirrors.Count;

    /// <summary>Events waiting for Redis on this node.</summary>
    public int BufferedEvents => _mirrors.Values.Sum(m => m.BufferedCount);

    /// <summary>The mirrors now (a moment's view: mirrors come and go meanwhile).</summary>
    public ICollection<SessionMirror> All => _mirrors.Values;

    public bool Contains(string sessionId) => _mirrors.ContainsKey(sessionId);

    public bool TryGet(string sessionId, out SessionMirror mirror) => _mirrors.TryGetValue(sessionId, out mirror!);

    /// <summary>Keeps the session's mirror (a run writes to it) until the returned handle is disposed.</summary>
    public IDisposable Retain(string sessionId)
    {
        while (true)
        {
            var mirror = _mirrors.GetOrAdd(sessionId, id => new SessionMirror(id, commands.NewLog()));
            if (mirror.Retain())
            {
                mirror.Hold();
                return new Retention(mirror);
            }
        }
    }

    /// <summary>
    /// The session's mirror, loaded, with one more user (the caller releases it); null when <paramref name="create"/> is
    /// false and there is none. When Redis cannot load it, a <paramref name="buffered"/> writer gets it unloaded.
    /// </summary>
    public async Task<SessionMirror?> AcquireAsync(string sessionId, bool create, bool buffered, CancellationToken cancellationToken)
    {
        while (true)
        {
            SessionMirror? mirror;
            if (create)
            {
                mirror = _mirrors.GetOrAdd(sessionId, id => new SessionMirror(id, commands.NewLog()));
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
            catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
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

    /// <summary>Subscribes the mirror to its session's channel and loads it from Redis, once.</summary>
    public async Task EnsureLoadedAsync(SessionMirror mirror, CancellationToken cancellationToken)
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
                var queue = await commands.Redis.Subscriber.SubscribeAsync(commands.Redis.Channel(mirror.SessionId)).ConfigureAwait(false);
                mirror.Queue = queue;
                _ = Task.Run(() => sync.ReadChannelAsync(mirror, queue), CancellationToken.None);
            }

            var fresh = await commands.LoadAsync(mirror.SessionId, mirror.Log.Head).ConfigureAwait(false);
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

    /// <summary>Drops the mirror unless someone uses it or it holds buffered events.</summary>
    public void Forget(SessionMirror mirror)
    {
        if (mirror.TryRemove() && _mirrors.TryRemove(new KeyValuePair<string, SessionMirror>(mirror.SessionId, mirror)))
        {
            SessionStoreLog.MirrorForgotten(logger, mirror.SessionId);
        }
    }

    public void Dispose()
    {
        foreach (var mirror in _mirrors.Values)
        {
            mirror.Queue?.Unsubscribe();
        }
    }

    /// <summary>A run's hold on a mirror.</summary>
    private sealed class Retention(SessionMirror mirror) : IDisposable
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
}
