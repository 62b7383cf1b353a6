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
/// than refusing every connection while the sessions themselves keep serving); the next renewal after Redis is back
/// writes them all again.
/// </remarks>
internal sealed partial class RedisConnectionSlots(
    RedisConnection redis, IOptions<ScaleoutOptions> options, TimeProvider time, ILogger<RedisConnectionSlots> logger) : ISharedConnectionSlots
{
    // KEYS[1] the leases; ARGV lease, limit, now ms, lapse ms. 1 when taken.
    private const string TakeScript = """
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
        redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
        if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) - tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
        return 1
        """;

    // This node's leases by key.
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _held = new(StringComparer.Ordinal);
    private long _next;
    private volatile bool _rewrite;

    /// <summary>How long a lease lives without renewal.</summary>
    public TimeSpan Lapse => TimeSpan.FromSeconds(2 * options.Value.NodeTimeoutSeconds);

    /// <summary>How often this node renews its leases.</summary>
    public TimeSpan RenewInterval => TimeSpan.FromSeconds(options.Value.NodeTimeoutSeconds / 2);

    public async ValueTask<IDisposable?> TryTakeAsync(string key, int limit, CancellationToken cancellationToken)
    {
        var lease = redis.NodeId + ":" + Interlocked.Increment(ref _next).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var held = _held.GetOrAdd(key, _ => new(StringComparer.Ordinal));
        var now = time.GetUtcNow();
        try
        {
            var taken = await redis.Database.ScriptEvaluateAsync(TakeScript, [Key(key)],
                [lease, limit, now.ToUnixTimeMilliseconds(), (now + Lapse).ToUnixTimeMilliseconds()]).ConfigureAwait(false);
            if ((long)taken == 0)
            {
                return null;
            }
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            Log.CountingLocally(logger, ex.Message);
            _rewrite = true;
            if (held.Count >= limit)
            {
                return null;
            }
        }

        held[lease] = 0;
        return new Slot(this, key, lease);
    }

    /// <summary>Renews every lease this node holds, one command per key (all of them written again after an outage).</summary>
    internal async Task RenewAsync(CancellationToken cancellationToken)
    {
        var rewrite = _rewrite;
        _rewrite = false;
        var lapse = time.GetUtcNow() + Lapse;
        foreach (var (key, leases) in _held)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return;
            }

            if (leases.IsEmpty)
            {
                _held.TryRemove(new KeyValuePair<string, ConcurrentDictionary<string, byte>>(key, leases));
                continue;
            }

            var entries = leases.Keys.Select(lease => new SortedSetEntry(lease, lapse.ToUnixTimeMilliseconds())).ToArray();
            try
            {
                // XX normally: a lease given back meanwhile must not come back; after an outage, all of them.
                await redis.Database.SortedSetAddAsync(Key(key), entries, rewrite ? SortedSetWhen.Always : SortedSetWhen.Exists).ConfigureAwait(false);
                await redis.Database.KeyExpireAsync(Key(key), lapse.UtcDateTime).ConfigureAwait(false);
            }
            catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
            {
                _rewrite = true;
                return;
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

    private RedisKey Key(string key) => redis.Key("limits", "conn:" + key);

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
