using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>The session store's upkeep: the maintenance pass (watchers, catch-up, checkpoints, orphaned runs, idle mirrors) and the repair after a reconnect.</summary>
internal sealed class SessionMaintenance(RedisSessionCommands commands, SessionMirrors mirrors, StreamSync sync, OutageBuffer buffer, ScaleoutOptions scaleout,
    TimeProvider time, ILogger logger, ScriptedAppends scripted)
{
    /// <summary>
    /// How many sessions that must first be loaded or flushed (after an outage) one pass works on at once: each of those
    /// reads or writes a whole log, unlike the few small commands of a session in step.
    /// </summary>
    private const int RecoveryParallelism = 64;

    private RedisConnection Redis => commands.Redis;

    /// <summary>How often a watched session's key lifetime is renewed: a quarter of it, at most five minutes.</summary>
    private TimeSpan TtlRenewal => TimeSpan.FromTicks(Math.Min(commands.KeyTtl.Ticks / 4, TimeSpan.FromMinutes(5).Ticks));

    /// <summary>
    /// One maintenance pass, run every <see cref="ScaleoutOptions.MaintenanceSeconds"/> by every node: advertise this
    /// node's watchers, learn other nodes' watchers for local runs, pick up missed events, write checkpoints, flush
    /// buffered events, end runs whose node died, and forget sessions nobody here needs. The pass is pipelined: every
    /// session's commands are issued before any reply is awaited, so a pass over 10,000 sessions in step costs one
    /// round trip (and one more for the few that have events to fetch, a checkpoint due or an orphaned run), not 10,000.
    /// </summary>
    public async Task MaintainAsync(IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var idle = TimeSpan.FromSeconds(scaleout.MirrorIdleSeconds);
        var passes = new List<Task>(mirrors.Count + 1);
        var recovering = new List<SessionMirror>();
        foreach (var mirror in mirrors.All)
        {
            if (!mirror.Loaded && mirror.BufferedCount == 0 && !mirror.Retained)
            {
                // Nobody here needs it loaded: nothing to do in Redis.
                if (mirror.IsUnused(idle))
                {
                    mirrors.Forget(mirror);
                }
            }
            else if (!mirror.Loaded || mirror.BufferedCount > 0)
            {
                recovering.Add(mirror);
            }
            else
            {
                // Runs until it first awaits a reply, having issued its commands: the next session's go out right behind.
                passes.Add(MaintainAsync(mirror, liveNodes, now, idle, cancellationToken));
            }
        }

        if (recovering.Count > 0)
        {
            passes.Add(Parallel.ForEachAsync(recovering, new ParallelOptions { MaxDegreeOfParallelism = RecoveryParallelism, CancellationToken = cancellationToken },
                async (mirror, token) => await RecoverAsync(mirror, liveNodes, now, idle, token).ConfigureAwait(false)));
        }

        try
        {
            await Task.WhenAll(passes).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Loads a mirror a run or buffered events need, writes its buffered events, then maintains it.</summary>
    private async Task RecoverAsync(SessionMirror mirror, IReadOnlySet<string> liveNodes, DateTimeOffset now, TimeSpan idle, CancellationToken cancellationToken)
    {
        try
        {
            await mirrors.EnsureLoadedAsync(mirror, cancellationToken).ConfigureAwait(false);
            if (!mirror.Loaded)
            {
                return;
            }

            if (mirror.BufferedCount > 0)
            {
                await buffer.FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            return; // Redis is away; the next pass tries again.
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            SessionStoreLog.MaintenanceFailed(logger, mirror.SessionId, ex);
            return;
        }

        await MaintainAsync(mirror, liveNodes, now, idle, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Maintains one loaded session. Its reads (the shared head, other nodes' watchers for a local run, the owners of its
    /// active runs) and its watcher advertisement are issued together before the first await; what depends on their
    /// answers (a catch-up, a checkpoint, ending an orphaned run, forgetting the mirror) follows.
    /// </summary>
    private async Task MaintainAsync(SessionMirror mirror, IReadOnlySet<string> liveNodes, DateTimeOffset now, TimeSpan idle, CancellationToken cancellationToken)
    {
        try
        {
            var db = Redis.Database;
            var watchers = Redis.Key(mirror.SessionId, "w");
            var issued = new List<Task>(4);
            if (Advertise(db, mirror, watchers, now) is { } unadvertised)
            {
                issued.Add(unadvertised);
            }

            // A run here: count watchers on other nodes, for idle-cancel.
            var remote = mirror.Retained ? db.SortedSetRangeByScoreAsync(watchers, now.ToUnixTimeMilliseconds(), double.PositiveInfinity) : null;
            var head = mirror.BufferedCount == 0 ? db.StringGetAsync(Redis.Key(mirror.SessionId, "seq")) : null;
            var active = mirror.Log.ActiveRuns();
            var owners = active.Count > 0 ? db.HashGetAsync(Redis.Key(mirror.SessionId, "runs"), active.Select(r => (RedisValue)r).ToArray()) : null;
            issued.AddRange(((Task?[])[remote, head, owners]).OfType<Task>());
            await Task.WhenAll(issued).ConfigureAwait(false);

            if (remote is not null)
            {
                mirror.RemoteWatchers = (await remote.ConfigureAwait(false)).Count(n => n != Redis.NodeId);
            }

            if (head is not null)
            {
                await sync.CatchUpToAsync(mirror, (long?)await head.ConfigureAwait(false) ?? 0, cancellationToken).ConfigureAwait(false);
            }

            await commands.CheckpointAsync(mirror, now, force: false).ConfigureAwait(false);
            if (owners is not null)
            {
                await EndOrphansAsync(mirror, active, await owners.ConfigureAwait(false), liveNodes).ConfigureAwait(false);
            }

            if (mirror.IsUnused(idle) && mirror.BufferedCount == 0)
            {
                mirrors.Forget(mirror);
                if (mirror.Advertised)
                {
                    await db.SortedSetRemoveAsync(watchers, Redis.NodeId).ConfigureAwait(false);
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

    /// <summary>
    /// Advertises this node as a watcher of the session while it has local watchers (fire and forget), and renews the
    /// keys' lifetime every few minutes; returns the removal of the advertisement when the last one left, else null.
    /// </summary>
    private Task<bool>? Advertise(IDatabase db, SessionMirror mirror, RedisKey watchers, DateTimeOffset now)
    {
        if (mirror.Log.Watchers > 0)
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
                    _ = db.KeyExpireAsync(Redis.Key(mirror.SessionId, name), commands.KeyTtl, CommandFlags.FireAndForget);
                }
            }

            mirror.Advertised = true;
            return null;
        }

        if (mirror.Advertised)
        {
            mirror.Advertised = false;
            return db.SortedSetRemoveAsync(watchers, Redis.NodeId);
        }

        return null;
    }

    /// <summary>
    /// Ends runs the log shows active whose node is gone (their watchers would otherwise wait forever), given the owners
    /// read for <paramref name="runIds"/>; a run that ended meanwhile (the catch-up brought its end) is left alone.
    /// </summary>
    private async Task EndOrphansAsync(SessionMirror mirror, IReadOnlyList<string> runIds, RedisValue[] owners, IReadOnlySet<string> liveNodes)
    {
        var stillActive = mirror.Log.ActiveRuns();
        for (var i = 0; i < runIds.Count; i++)
        {
            var (runId, owner) = (runIds[i], (string?)owners[i]);
            if (owner is null or RedisRunControl.Ended || owner == Redis.NodeId || liveNodes.Contains(owner) || !stillActive.Contains(runId))
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
        var first = await commands.EndOrphanAsync(sessionId, runId, owner, events).ConfigureAwait(false);
        scripted.Report(sessionId, first, events);
        return first > 0;
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
