using AiStream.Gateway.Limits;
using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// Limit counters in Redis, so runs per minute and daily token budgets hold across every node: one key per window,
/// added to and checked in one script (a single key, so any cluster slot), expiring with the window. When Redis is
/// unreachable the request is refused with 503 rather than let through uncounted.
/// </summary>
internal sealed class RedisLimitCounter(RedisConnection redis) : ILimitCounter
{
    // KEYS[1] window; ARGV amount, limit, window ms. 1 when added, 0 when it would pass the limit (nothing changes).
    private const string TryAddScript = """
        local total = redis.call('INCRBY', KEYS[1], ARGV[1])
        if total == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
        if total > tonumber(ARGV[2]) then
          redis.call('DECRBY', KEYS[1], ARGV[1])
          return 0
        end
        return 1
        """;

    // KEYS[1] window; ARGV amount (may be negative), window ms. Never below zero.
    private const string AddScript = """
        local total = redis.call('INCRBY', KEYS[1], ARGV[1])
        if total < 0 then redis.call('SET', KEYS[1], 0) end
        if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return total
        """;

    public async ValueTask<bool> TryAddAsync(string key, long amount, long limit, TimeSpan window, CancellationToken cancellationToken)
    {
        try
        {
            var added = await redis.Database.ScriptEvaluateAsync(TryAddScript, [Key(key)], [amount, limit, (long)window.TotalMilliseconds]).ConfigureAwait(false);
            return (long)added == 1;
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("The limit counters (Redis) are unreachable; try again shortly.", ex);
        }
    }

    public async ValueTask AddAsync(string key, long amount, TimeSpan window)
    {
        try
        {
            await redis.Database.ScriptEvaluateAsync(AddScript, [Key(key)], [amount, (long)window.TotalMilliseconds]).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            // A settlement that cannot be written keeps the larger reservation: the safe side.
        }
    }

    // One hash slot per counter (a Redis Cluster spreads them), not one for all of them.
    private RedisKey Key(string name) => redis.Key("limits:" + name, "n");
}
