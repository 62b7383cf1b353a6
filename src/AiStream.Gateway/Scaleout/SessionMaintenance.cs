using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>The session store's upkeep: the maintenance pass (watchers, catch-up, checkpoints, orphaned runs, idle mirrors) and the repair after a reconnect.</summary>
internal sealed class SessionMaintenance(RedisSessionCommands commands, SessionMirrors mirrors, StreamSync sync, OutageBuffer buffer, ScaleoutOptions scaleout,
    TimeProvider time, ILogger logger)
{
    /// <summary>How many sessions one maintenance pass keeps in flight: their commands share the connection's pipeline.</summary>
    private const int MaintenanceParallelism = 64;

    private RedisConnection Redis => commands.Redis;

    /// <summary>
    /// One maintenance pass, run every <see cref="ScaleoutOptions.MaintenanceSeconds"/> by every node: advertise this
    /// node's watchers, learn other nodes' watchers for local runs, pick up missed events, write checkpoints, flush
    /// buffered events, end runs whose node died, and forget sessions nobody here needs. Sessions are maintained
    /// concurrently (each in order), so a pass over 10,000 sessions costs round trips in flight together rather than
    /// 10,000 in a row.
    /// </summary>
    public async Task MaintainAsync(IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var idle = TimeSpan.FromSeconds(scaleout.MirrorIdleSeconds);
        try
        {
            await Parallel.ForEachAsync(mirrors.All, new ParallelOptions { MaxDegreeOfParallelism = MaintenanceParallelism, CancellationToken = cancellationToken },
                async (mirror, token) => await MaintainAsync(mirror, liveNodes, now, idle, token).ConfigureAwait(false)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task MaintainAsync(SessionMirror mirror, IReadOnlySet<string> liveNodes, DateTimeOffset now, TimeSpan idle, CancellationToken cancellationToken)
    {
        try
        {
            if (!mirror.Loaded)
            {
                if (mirror.BufferedCount > 0 || mirror.Retained)
                {
                    await mirrors.EnsureLoadedAsync(mirror, cancellationToken).ConfigureAwait(false);
                }
                else if (mirror.IsUnused(idle))
                {
                    mirrors.Forget(mirror);
                }

                if (!mirror.Loaded)
                {
                    return;
                }
            }

            if (mirror.BufferedCount > 0)
            {
                await buffer.FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
            }

            await AdvertiseAsync(mirror, now).ConfigureAwait(false);
            await sync.CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
            await commands.CheckpointAsync(mirror, now, force: false).ConfigureAwait(false);
            await EndOrphansAsync(mirror, liveNodes).ConfigureAwait(false);
            if (mirror.IsUnused(idle) && mirror.BufferedCount == 0)
            {
                mirrors.Forget(mirror);
                if (mirror.Advertised)
                {
                    await Redis.Database.SortedSetRemoveAsync(Redis.Key(mirror.SessionId, "w"), Redis.NodeId).ConfigureAwait(false);
                }

                if (mirror.Queue is { } queue)
                {
                    await queue.UnsubscribeAsync().ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            // Redis is away; the next pass tries again.
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            SessionStoreLog.MaintenanceFailed(logger, mirror.SessionId, ex);
        }
    }

    /// <summary>How often a watched session's key lifetime is renewed: a quarter of it, at most five minutes.</summary>
    private TimeSpan TtlRenewal => TimeSpan.FromTicks(Math.Min(commands.KeyTtl.Ticks / 4, TimeSpan.FromMinutes(5).Ticks));

    private async Task AdvertiseAsync(SessionMirror mirror, DateTimeOffset now)
    {
        var db = Redis.Database;
        var watchers = Redis.Key(mirror.SessionId, "w");
        var localWatchers = mirror.Log.Watchers;
        var ttl = commands.KeyTtl;
        if (localWatchers > 0)
        {
            var until = (now + TimeSpan.FromSeconds(scaleout.NodeTimeoutSeconds)).ToUnixTimeMilliseconds();
            _ = db.SortedSetAddAsync(watchers, Redis.NodeId, until, CommandFlags.FireAndForget);
            // Watched sessions stay in Redis however long nobody writes: their keys' lifetime is renewed every few
            // minutes (not every pass), well before it can lapse.
            if (now - mirror.TtlRenewedAt >= TtlRenewal)
            {
                mirror.TtlRenewedAt = now;
                foreach (var name in (string[])["seq", "log", "lb", "cp", "w"])
                {
                    _ = db.KeyExpireAsync(Redis.Key(mirror.SessionId, name), ttl, CommandFlags.FireAndForget);
                }
            }

            mirror.Advertised = true;
        }
        else if (mirror.Advertised)
        {
            mirror.Advertised = false;
            await db.SortedSetRemoveAsync(watchers, Redis.NodeId).ConfigureAwait(false);
        }

        if (mirror.Retained)
        {
            // A run here: count watchers on other nodes, for idle-cancel.
            var live = await db.SortedSetRangeByScoreAsync(watchers, now.ToUnixTimeMilliseconds(), double.PositiveInfinity).ConfigureAwait(false);
            mirror.RemoteWatchers = live.Count(n => n != Redis.NodeId);
        }
    }

    /// <summary>Ends runs the log shows active whose node is gone: their watchers would otherwise wait forever.</summary>
    private async Task EndOrphansAsync(SessionMirror mirror, IReadOnlySet<string> liveNodes)
    {
        var active = mirror.Log.ActiveRuns();
        if (active.Count == 0)
        {
            return;
        }

        var runs = Redis.Key(mirror.SessionId, "runs");
        foreach (var runId in active)
        {
            var owner = (string?)await Redis.Database.HashGetAsync(runs, runId).ConfigureAwait(false);
            if (owner is null or RedisRunControl.Ended || owner == Redis.NodeId || liveNodes.Contains(owner))
            {
                continue;
            }

            if (await EndOrphanAsync(mirror.SessionId, runId, owner, "node_lost", $"The node running this run ({owner}) stopped answering.").ConfigureAwait(false))
            {
                SessionStoreLog.OrphanEnded(logger, mirror.SessionId, runId, owner);
            }
        }
    }

    /// <summary>Ends a run registered to <paramref name="owner"/> with RUN_ERROR (and closes its open text). True when this call ended it.</summary>
    public async Task<bool> EndOrphanAsync(string sessionId, string runId, string owner, string code, string message)
    {
        var events = new List<JsonObject>();
        if (mirrors.TryGet(sessionId, out var mirror))
        {
            events.AddRange(mirror.Log.OpenMessages(runId).Select(id => AgUi.Event(AgUi.TextMessageEnd, ("messageId", id))));
        }

        events.Add(AgUi.Event(AgUi.RunError, ("message", message), ("code", code), ("runId", runId)));
        return await commands.EndOrphanAsync(sessionId, runId, owner, events).ConfigureAwait(false);
    }

    /// <summary>
    /// After a reconnect: if Redis came back without its data, put back what this node knows (each session's position
    /// and a checkpoint of its state), then write buffered events and pick up what was missed.
    /// </summary>
    public async Task CatchUpAllAsync(CancellationToken cancellationToken)
    {
        foreach (var mirror in mirrors.All)
        {
            try
            {
                if (mirror.BufferedCount > 0)
                {
                    await buffer.FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
                }
                else if (mirror.Loaded && mirror.Log.Head > 0)
                {
                    if (await commands.RaiseFloorAsync(mirror.SessionId, mirror.Log.Head).ConfigureAwait(false))
                    {
                        SessionStoreLog.Repaired(logger, mirror.SessionId, mirror.Log.Head);
                        mirror.CheckpointSeq = 0;
                        await commands.CheckpointAsync(mirror, time.GetUtcNow(), force: true).ConfigureAwait(false);
                    }
                }

                await sync.CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
            {
                return;
            }
        }
    }
}
