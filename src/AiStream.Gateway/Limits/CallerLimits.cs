using System.Threading.RateLimiting;
using AiStream.Gateway.Security;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Limits;

/// <summary>
/// The per-caller rate limits that are not tied to one HTTP request: runs per minute (REST, hub and <c>/agui</c>
/// share one budget) and HTTP messages per second. Built on System.Threading.RateLimiting's partitioned limiters, whose
/// idle partitions are dropped by the library.
/// </summary>
internal sealed class CallerLimits : IDisposable
{
    private readonly PartitionedRateLimiter<string>? _runs;
    private readonly PartitionedRateLimiter<string>? _messages;
    private readonly LimitsMetrics _metrics;

    public CallerLimits(IOptions<LimitsOptions> options, LimitsMetrics metrics)
    {
        _metrics = metrics;
        var limits = options.Value;
        if (limits.RunsPerMinute > 0)
        {
            _runs = PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = limits.RunsPerMinute,
                Window = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
            }));
        }

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

    /// <summary>Null when the caller may start a run now, else how long until it may.</summary>
    public TimeSpan? TryStartRun(HttpContext context) => Acquire(_runs, Key(context), "runs_per_minute", TimeSpan.FromMinutes(1));

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

    public void Dispose()
    {
        _runs?.Dispose();
        _messages?.Dispose();
    }
}
