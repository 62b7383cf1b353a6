using System.Threading.RateLimiting;
using AiStream.Gateway.Security;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Limits;

/// <summary>
/// The per-caller rate limits that are not tied to one HTTP request: runs per minute (REST, hub and <c>/agui</c>
/// share one budget, counted in <see cref="ILimitCounter"/>, so in Redis when it is configured) and HTTP messages per
/// second (a System.Threading.RateLimiting token bucket per caller on this node, whose idle partitions the library drops).
/// </summary>
internal sealed class CallerLimits : IDisposable
{
    private readonly PartitionedRateLimiter<string>? _messages;
    private readonly LimitsMetrics _metrics;
    private readonly ILimitCounter _counter;
    private readonly TimeProvider _time;
    private readonly int _runsPerMinute;

    public CallerLimits(IOptions<LimitsOptions> options, LimitsMetrics metrics, ILimitCounter counter, TimeProvider time)
    {
        _metrics = metrics;
        _counter = counter;
        _time = time;
        var limits = options.Value;
        _runsPerMinute = limits.RunsPerMinute;

        if (limits.MessagesPerSecond > 0)
        {
            _messages = PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetTokenBucketLimiter(key, _ => MessageBucket(limits.MessagesPerSecond)));
        }
    }

    /// <summary>The bucket of one connection's (or caller's) messages: the rate per second, bursts of twice it.</summary>
    public static TokenBucketRateLimiterOptions MessageBucket(double perSecond) => new()
    {
        TokenLimit = Math.Max(1, (int)Math.Ceiling(perSecond * 2)),
        TokensPerPeriod = Math.Max(1, (int)Math.Ceiling(perSecond / 10)),
        ReplenishmentPeriod = TimeSpan.FromSeconds(Math.Max(1, (int)Math.Ceiling(perSecond / 10)) / perSecond),
        QueueLimit = 0,
        AutoReplenishment = true,
    };

    /// <summary>
    /// Null when the caller may start a run now, else how long until it may. Counted in whole UTC minutes in
    /// <see cref="ILimitCounter"/>, so with Redis the budget holds across nodes.
    /// </summary>
    public async ValueTask<TimeSpan?> TryStartRunAsync(HttpContext context, CancellationToken cancellationToken)
    {
        if (_runsPerMinute == 0)
        {
            return null;
        }

        var now = _time.GetUtcNow();
        var minute = now.ToUnixTimeSeconds() / 60;
        var key = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"runs:{Key(context)}:{minute}");
        if (await _counter.TryAddAsync(key, 1, _runsPerMinute, TimeSpan.FromMinutes(2), cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        _metrics.Refused("runs_per_minute");
        return DateTimeOffset.FromUnixTimeSeconds((minute + 1) * 60) - now;
    }

    /// <summary>
    /// Null when the caller may send one more HTTP message now, else how long until it may. Counted per credential, or
    /// per connection when there is none (with authentication off, every local client shares one address).
    /// </summary>
    public TimeSpan? TryMessage(HttpContext context) =>
        Acquire(_messages, CallerGrants.Of(context).LimitKey ?? "conn:" + context.Connection.Id, "messages_per_second", TimeSpan.FromSeconds(1));

    /// <summary>The partition of a caller: its credential, or its address when it has none.</summary>
    public static string Key(HttpContext context) =>
        CallerGrants.Of(context).LimitKey ?? "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown");

    private TimeSpan? Acquire(PartitionedRateLimiter<string>? limiter, string key, string limit, TimeSpan fallback)
    {
        if (limiter is null)
        {
            return null;
        }

        using var lease = limiter.AttemptAcquire(key);
        if (lease.IsAcquired)
        {
            return null;
        }

        _metrics.Refused(limit);
        return lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter) ? retryAfter : fallback;
    }

    public void Dispose() => _messages?.Dispose();
}
