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

/// <summary>The maintenance pass: watchers advertised, checkpoints written, orphaned runs ended, idle mirrors forgotten.</summary>
internal sealed partial class RedisSessionStore
{
    /// <summary>How many sessions one maintenance pass keeps in flight: their commands share the connection's pipeline.</summary>
    private const int MaintenanceParallelism = 64;

    /// <summary>
    /// One maintenance pass, run every <see cref="ScaleoutOptions.MaintenanceSeconds"/> by every node: advertise this
    /// node's watchers, learn other nodes' watchers for local runs, pick up missed events, write checkpoints, flush
    /// buffered events, end runs whose node died, and forget sessions nobody here needs. Sessions are maintained
    /// concurrently (each in order), so a pass over 10,000 sessions costs round trips in flight together rather than
    /// 10,000 in a row.
    /// </summary>
    internal async Task MaintainAsync(IReadOnlySet<string> liveNodes, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        var idle = TimeSpan.FromSeconds(_scaleout.MirrorIdleSeconds);
        try
        {
            await Parallel.ForEachAsync(_mirrors.Values, new ParallelOptions { MaxDegreeOfParallelism = MaintenanceParallelism, CancellationToken = cancellationToken },
                async (mirror, token) => await MaintainAsync(mirror, liveNodes, now, idle, token).ConfigureAwait(false)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task MaintainAsync(Mirror mirror, IReadOnlySet<string> liveNodes, DateTimeOffset now, TimeSpan idle, CancellationToken cancellationToken)
    {
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
                    return;
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

    /// <summary>How often a watched session's key lifetime is renewed: a quarter of it, at most five minutes.</summary>
    private TimeSpan TtlRenewal => TimeSpan.FromTicks(Math.Min(KeyTtl.Ticks / 4, TimeSpan.FromMinutes(5).Ticks));

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
            // Watched sessions stay in Redis however long nobody writes: their keys' lifetime is renewed every few
            // minutes (not every pass), well before it can lapse.
            if (now - mirror.TtlRenewedAt >= TtlRenewal)
            {
                mirror.TtlRenewedAt = now;
                foreach (var name in (string[])["seq", "log", "lb", "cp", "w"])
                {
                    _ = db.KeyExpireAsync(_redis.Key(mirror.SessionId, name), ttl, CommandFlags.FireAndForget);
                }
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
}
