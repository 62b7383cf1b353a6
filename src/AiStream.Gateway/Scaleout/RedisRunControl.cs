using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// Run ownership in Redis (<c>{session}:runs</c>: run id → node id) and cancels routed to the owner over its sharded
/// control channel. A cancel for a run whose node no longer listens ends the run with RUN_ERROR right away.
/// </summary>
internal sealed partial class RedisRunControl(RedisConnection redis, RedisSessionStore sessions, ILogger<RedisRunControl> logger) : IRunControl
{
    /// <summary>What the run registry holds for a run another node ended (a tombstone that fences its old owner).</summary>
    public const string Ended = "ended";

    private readonly Lock _lock = new();
    private Task? _subscribed;

    public async Task ListenAsync(Func<string, string, string, Task> cancel)
    {
        Task subscribed;
        lock (_lock)
        {
            // StackExchange.Redis subscribes again by itself after a reconnect.
            _subscribed ??= redis.Subscriber.SubscribeAsync(redis.ControlChannel(redis.NodeId), (channel, message) =>
            {
                var parts = ((string)message!).Split('\n');
                if (parts.Length == 4 && parts[0] == "cancel")
                {
                    _ = cancel(parts[1], parts[2], parts[3]);
                }
            });
            subscribed = _subscribed;
        }

        try
        {
            // A run is registered only once this node hears cancels for it; otherwise a cancel could find nobody
            // listening and end a live run as lost.
            await subscribed.ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            Log.ListenFailed(logger, ex);
            lock (_lock)
            {
                _subscribed = null; // try again with the next run
            }
        }
    }

    public async ValueTask RegisterAsync(string sessionId, string runId, string? owner)
    {
        try
        {
            var runs = redis.Key(sessionId, "runs");
            await redis.Database.HashSetAsync(runs, runId, redis.NodeId).ConfigureAwait(false);
            await redis.Database.KeyExpireAsync(runs, sessions.KeyTtl).ConfigureAwait(false);
            if (owner is not null)
            {
                // Who may cancel the run without admin, wherever the cancel arrives.
                var owners = redis.Key(sessionId, "runowners");
                await redis.Database.HashSetAsync(owners, runId, owner).ConfigureAwait(false);
                await redis.Database.KeyExpireAsync(owners, sessions.KeyTtl).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            Log.NotRegistered(logger, sessionId, runId, ex.Message);
        }
    }

    public async ValueTask<string?> OwnerElsewhereAsync(string sessionId, string runId)
    {
        try
        {
            return await redis.Database.HashGetAsync(redis.Key(sessionId, "runowners"), runId).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("Run control (Redis) is unreachable; try the cancel again shortly.", ex);
        }
    }

    public async ValueTask UnregisterAsync(string sessionId, string runId)
    {
        try
        {
            await redis.Database.HashDeleteAsync(redis.Key(sessionId, "runs"), runId).ConfigureAwait(false);
            await redis.Database.HashDeleteAsync(redis.Key(sessionId, "runowners"), runId).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            // It expires with the session's keys; no other node will end a run the log shows finished.
        }
    }

    public async ValueTask<bool> CancelElsewhereAsync(string sessionId, string runId, string reason)
    {
        string? owner;
        long receivers;
        try
        {
            owner = await redis.Database.HashGetAsync(redis.Key(sessionId, "runs"), runId).ConfigureAwait(false);
            if (owner is null || owner == Ended || owner == redis.NodeId)
            {
                return false;
            }

            receivers = await redis.Database.PublishAsync(redis.ControlChannel(owner), $"cancel\n{sessionId}\n{runId}\n{reason}").ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("Run control (Redis) is unreachable; try the cancel again shortly.", ex);
        }

        if (receivers == 0)
        {
            await sessions.EndOrphanAsync(sessionId, runId, owner, "node_lost", $"The node running this run ({owner}) is gone.").ConfigureAwait(false);
        }

        return true;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 8301, Level = LogLevel.Error, Message = "Could not subscribe to this node's control channel; cancels from other nodes will not arrive")]
        public static partial void ListenFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 8302, Level = LogLevel.Warning, Message = "Run {RunId} of session {SessionId} is not registered in Redis ({Reason}); other nodes cannot cancel it")]
        public static partial void NotRegistered(ILogger logger, string sessionId, string runId, string reason);
    }
}
