using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// The node's heartbeat: renews its liveness in Redis, keeps its sessions in step (watcher counts, missed events,
/// checkpoints, buffered writes, orphaned runs), sweeps presence and renews its connections and connection slots.
/// </summary>
internal sealed partial class ScaleoutMaintenance(
    RedisConnection redis,
    RedisSessionStore sessions,
    RedisPresenceStore presence,
    RedisConnectionSlots slots,
    IOptions<ScaleoutOptions> options,
    TimeProvider time,
    ILogger<ScaleoutMaintenance> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        var lastRenewal = DateTimeOffset.MinValue;
        var lastSlots = DateTimeOffset.MinValue;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(o.MaintenanceSeconds), time);
        do
        {
            try
            {
                var now = time.GetUtcNow();
                var db = redis.Database;
                // Liveness in one round trip: the three commands go out together and Redis runs them in order.
                var renewed = db.SortedSetAddAsync(redis.Nodes, redis.NodeId, (now + TimeSpan.FromSeconds(o.NodeTimeoutSeconds)).ToUnixTimeMilliseconds());
                // Nodes gone for a long time are forgotten; a node is live while its score is in the future.
                var pruned = db.SortedSetRemoveRangeByScoreAsync(redis.Nodes, double.NegativeInfinity, (now - TimeSpan.FromHours(1)).ToUnixTimeMilliseconds());
                var nodes = db.SortedSetRangeByScoreAsync(redis.Nodes, now.ToUnixTimeMilliseconds(), double.PositiveInfinity);
                await Task.WhenAll(renewed, pruned, nodes).ConfigureAwait(false);
                var live = (await nodes.ConfigureAwait(false)).Select(n => (string)n!).ToHashSet(StringComparer.Ordinal);
                var renewals = new List<Task>(2);
                if (now - lastRenewal >= presence.RenewInterval)
                {
                    lastRenewal = now;
                    renewals.Add(presence.RenewAllAsync(stoppingToken));
                }

                if (now - lastSlots >= slots.RenewInterval)
                {
                    lastSlots = now;
                    renewals.Add(slots.RenewAsync(stoppingToken));
                }

                // The two renewals are independent and run side by side; both before the sweep, so it never expires a
                // connection this node was about to renew. Each of these is one pipelined pass.
                await Task.WhenAll(renewals).ConfigureAwait(false);
                await sessions.MaintainAsync(live, stoppingToken).ConfigureAwait(false);
                await presence.SweepAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
            {
                // Redis is away; readiness says so, and the next tick tries again.
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Log.Failed(logger, ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Leaving cleanly: other nodes need not wait for this node's liveness to lapse.
            await redis.Database.SortedSetRemoveAsync(redis.Nodes, redis.NodeId).WaitAsync(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException || RedisSessionStore.IsRedisFailure(ex))
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 8401, Level = LogLevel.Error, Message = "Scale-out maintenance failed")]
        public static partial void Failed(ILogger logger, Exception exception);
    }
}

/// <summary>Ready while Redis answers; a node without Redis keeps serving local watchers but takes no new traffic.</summary>
internal sealed class RedisReadyCheck(RedisConnection redis, RedisSessionStore sessions) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["node"] = redis.NodeId, ["sessions"] = sessions.MirrorCount, ["buffered"] = sessions.BufferedEvents };
        try
        {
            var latency = await redis.Database.PingAsync().WaitAsync(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
            data["pingMs"] = latency.TotalMilliseconds;
            return HealthCheckResult.Healthy("redis answers", data);
        }
        catch (Exception ex) when (ex is TimeoutException or RedisException || RedisSessionStore.IsRedisFailure(ex))
        {
            return HealthCheckResult.Unhealthy("redis unreachable: " + ex.Message, null, data);
        }
    }
}
