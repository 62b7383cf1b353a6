using System.Collections.Concurrent;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// Connection slots shared by every node. Each held slot is a lease in a sorted set per caller (or address), scored by
/// when it lapses; the node holding it renews its leases every half <c>NodeTimeoutSeconds</c>, so the slots of a node
/// that dies free themselves within twice that. Taking a slot drops lapsed leases and counts the rest in one script.
/// </summary>
/// <remarks>
/// While Redis is unreachable a node counts its own slots against the limit (fails open to the per-node limit rather
/// than refusing every connection while the sessions themselves keep serving). Every renewal writes all the leases the
/// node holds, so after an outage, a Redis that came back empty or a lease that lapsed during a stall, Redis counts
/// them again; leases given back while a renewal wrote them are removed right after it.
/// </remarks>
internal sealed partial class RedisConnectionSlots(
    RedisConnection redis, IOptions<ScaleoutOptions> options, TimeProvider time, ILogger<RedisConnectionSlots> logger) : ISharedConnectionSlots
{
    // KEYS[1] the leases; ARGV lease, limit, now ms, lapse ms. 1 when taken. The lease itself is not counted: a renewal
    // that ran after the take put it in this node's held set (before this round trip) has written it already, and
    // counting it refused the only connection of a caller whose limit is 1 (seen under load in RedisLimitsTests).
    private const string TakeScript = """
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
        local count = redis.call('ZCARD', KEYS[1])
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) then count = count - 1 end
        if count >= tonumber(ARGV[2]) then return 0 end
        redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
        if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) - tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
        return 1
        """;

    // This node's leases by key. A key's set is added to and dropped (when empty) under _gate, so a take in flight never
    // puts its lease in a set the renewal already dropped.
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _held = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private long _next;

    /// <summary>How long a lease lives without renewal.</summary>
    public TimeSpan Lapse => TimeSpan.FromSeconds(2 * options.Value.NodeTimeoutSeconds);

    /// <summary>How often this node renews its leases.</summary>
    public TimeSpan RenewInterval => TimeSpan.FromSeconds(options.Value.NodeTimeoutSeconds / 2);

    public async ValueTask<IDisposable?> TryTakeAsync(string key, int limit, CancellationToken cancellationToken)
    {
        var lease = redis.NodeId + ":" + Interlocked.Increment(ref _next).ToString(System.Globalization.CultureInfo.InvariantCulture);
        // Held locally from before the round trip: a renewal meanwhile writes it too (and keeps its key's set).
        ConcurrentDictionary<string, byte> held;
        lock (_gate)
        {
            held = _held.GetOrAdd(key, _ => new(StringComparer.Ordinal));
            held[lease] = 0;
        }

        var now = time.GetUtcNow();
        try
        {
            var taken = await redis.Database.ScriptEvaluateAsync(TakeScript, [Key(key)],
                [lease, limit, now.ToUnixTimeMilliseconds(), (now + Lapse).ToUnixTimeMilliseconds()]).ConfigureAwait(false);
            if ((long)taken == 0)
            {
                Give(key, lease);
                return null;
            }
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            Log.CountingLocally(logger, ex.Message);
            if (held.Count > limit)
            {
                Give(key, lease);
                return null;
            }
        }
        catch
        {
            Give(key, lease);
            throw;
        }

        return new Slot(this, key, lease);
    }

    /// <summary>
    /// Writes every lease this node holds with a new lapse time, all keys in one pipelined pass, then removes the ones
    /// given back while it wrote them.
    /// </summary>
    internal async Task RenewAsync(CancellationToken cancellationToken)
    {
        var lapse = time.GetUtcNow() + Lapse;
        var writes = new List<(RedisKey Key, ConcurrentDictionary<string, byte> Leases, string[] Written, Task Done)>();
        var db = redis.Database;
        foreach (var (key, leases) in _held)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            lock (_gate)
            {
                if (leases.IsEmpty)
                {
                    _held.TryRemove(new KeyValuePair<string, ConcurrentDictionary<string, byte>>(key, leases));
                    continue;
                }
            }

            var written = leases.Keys.ToArray();
            var entries = written.Select(lease => new SortedSetEntry(lease, lapse.ToUnixTimeMilliseconds())).ToArray();
            var redisKey = Key(key);
            writes.Add((redisKey, leases, written, Task.WhenAll(db.SortedSetAddAsync(redisKey, entries), db.KeyExpireAsync(redisKey, lapse.UtcDateTime))));
        }

        try
        {
            await Task.WhenAll(writes.Select(w => w.Done)).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            return; // the next renewal writes them all again
        }

        foreach (var (redisKey, leases, written, _) in writes)
        {
            if (written.Where(lease => !leases.ContainsKey(lease)).Select(lease => (RedisValue)lease).ToArray() is { Length: > 0 } given)
            {
                _ = db.SortedSetRemoveAsync(redisKey, given, CommandFlags.FireAndForget);
            }
        }
    }

    private void Give(string key, string lease)
    {
        if (_held.TryGetValue(key, out var leases))
        {
            leases.TryRemove(lease, out _);
        }

        // Not awaited: a give-back Redis misses lapses by itself, since nothing renews it.
        _ = redis.Database.SortedSetRemoveAsync(Key(key), lease, CommandFlags.FireAndForget);
    }

    // One hash slot per caller (a Redis Cluster spreads them), not one for every caller.
    private RedisKey Key(string key) => redis.Key("conn:" + key, "slots");

    private sealed class Slot(RedisConnectionSlots owner, string key, string lease) : IDisposable
    {
        private int _given;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _given, 1) == 0)
            {
                owner.Give(key, lease);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 8501, Level = LogLevel.Warning, Message = "Connection limits counted on this node alone: Redis is unreachable ({Reason})")]
        public static partial void CountingLocally(ILogger logger, string reason);
    }
}
