using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Limits;

/// <summary>
/// Limits per caller: concurrent long-lived connections through the ASP.NET Core rate limiter (so they apply to every
/// transport in the pipeline), runs per minute and messages per second through <see cref="CallerLimits"/>, and
/// messages per second per hub connection through a hub filter.
/// </summary>
internal static class LimitsHosting
{
    public static IServiceCollection AddAiStreamLimits(this IServiceCollection services)
    {
        services.AddOptions<LimitsOptions>().BindConfiguration(LimitsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<LimitsMetrics>();
        services.AddSingleton<CallerLimits>();
        services.AddSingleton<TokenBudget>();
        // Scale-out replaces it with the Redis counter, so budgets hold across nodes.
        services.TryAddSingleton<ILimitCounter, InMemoryLimitCounter>();
        services.AddSingleton<HubMessageLimit>();
        services.Configure<HubOptions>(hub => hub.AddFilter<HubMessageLimit>());
        services.AddRateLimiter(_ => { });
        services.AddOptions<RateLimiterOptions>().Configure<IOptions<LimitsOptions>, LimitsMetrics, IServiceProvider>((rate, limits, metrics, provider) =>
        {
            var perUser = limits.Value.ConnectionsPerUser;
            var perIp = limits.Value.ConnectionsPerIp;
            if (perUser == 0 && perIp == 0)
            {
                return;
            }

            // With scale-out the slots are counted in Redis, so the limits hold across nodes.
            var shared = provider.GetService<ISharedConnectionSlots>();
            var time = provider.GetRequiredService<TimeProvider>();
            rate.GlobalLimiter = PartitionedRateLimiter.CreateChained(
                Connections(perUser, context => Security.CallerGrants.Of(context).LimitKey, shared, time),
                Connections(perIp, context => "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown"), shared, time));
            rate.OnRejected = (rejected, cancellationToken) =>
            {
                metrics.Refused("connections");
                var message = $"Too many open connections (AiStream:Limits:ConnectionsPerUser {perUser}, ConnectionsPerIp {perIp}); close one first.";
                return new ValueTask(WriteTooManyAsync(rejected.HttpContext, message, "too_many_connections", TimeSpan.FromSeconds(1)));
            };
        });
        return services;
    }

    /// <summary>A 429 problem with Retry-After (whole seconds, at least 1).</summary>
    public static Task WriteTooManyAsync(HttpContext context, string message, string code, TimeSpan retryAfter)
    {
        return new Api.ApiError(StatusCodes.Status429TooManyRequests, message, "rate_limit_error", code) { RetryAfter = retryAfter }.ToResult().ExecuteAsync(context);
    }

    /// <summary>A 429 result with Retry-After, for endpoints.</summary>
    public static IResult TooMany(HttpContext context, string message, string code, TimeSpan retryAfter) =>
        new TooManyResult(message, code, retryAfter);

    private sealed class TooManyResult(string message, string code, TimeSpan retryAfter) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext) => WriteTooManyAsync(httpContext, message, code, retryAfter);
    }

    /// <summary>
    /// A concurrency limiter per key for the requests that hold a connection open (watches, hub connections, AG-UI
    /// streams, completions); every other request passes. No key (an anonymous caller for the per-user limit) passes too.
    /// The slots are this node's, or with <paramref name="shared"/> every node's.
    /// </summary>
    private static PartitionedRateLimiter<HttpContext> Connections(int limit, Func<HttpContext, string?> key, ISharedConnectionSlots? shared, TimeProvider time) =>
        PartitionedRateLimiter.Create<HttpContext, string>(context =>
            limit == 0 || !IsLongLived(context.Request) || key(context) is not { } partition
                ? RateLimitPartition.GetNoLimiter("")
                : shared is null
                    ? RateLimitPartition.GetConcurrencyLimiter(partition, _ => new ConcurrencyLimiterOptions { PermitLimit = limit, QueueLimit = 0 })
                    : RateLimitPartition.Get(partition, p => new SharedConnectionLimiter(p, limit, shared, time)));

    private static bool IsLongLived(HttpRequest request)
    {
        var path = request.Path;
        return HttpMethods.IsGet(request.Method)
            ? path.StartsWithSegments("/hubs/sessions", StringComparison.Ordinal) || (path.Value?.EndsWith("/events", StringComparison.Ordinal) == true && path.StartsWithSegments("/api/sessions", StringComparison.Ordinal))
            : HttpMethods.IsPost(request.Method) && (path.Equals("/agui", StringComparison.Ordinal) || path.Equals("/v1/chat/completions", StringComparison.Ordinal));
    }
}

/// <summary>
/// Messages per second per hub connection: one token bucket per connection (a partition of one limiter, dropped by the
/// library once idle), refused calls answered with a HubException that says why and when to retry.
/// </summary>
internal sealed class HubMessageLimit(IOptions<LimitsOptions> options, LimitsMetrics metrics) : IHubFilter, IDisposable
{
    private readonly PartitionedRateLimiter<string>? _limiter = options.Value.MessagesPerSecond > 0
        ? PartitionedRateLimiter.Create<string, string>(id => RateLimitPartition.GetTokenBucketLimiter(id, _ => CallerLimits.MessageBucket(options.Value.MessagesPerSecond)))
        : null;

    public ValueTask<object?> InvokeMethodAsync(HubInvocationContext invocationContext, Func<HubInvocationContext, ValueTask<object?>> next)
    {
        if (_limiter is not null)
        {
            using var lease = _limiter.AttemptAcquire(invocationContext.Context.ConnectionId);
            if (!lease.IsAcquired)
            {
                metrics.Refused("messages_per_second");
                var retry = lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? after : TimeSpan.FromSeconds(1);
                throw new HubException(string.Create(CultureInfo.InvariantCulture,
                    $"Too many messages on this connection (AiStream:Limits:MessagesPerSecond {options.Value.MessagesPerSecond}); retry in {Math.Max(0.1, retry.TotalSeconds):0.#} s."));
            }
        }

        return next(invocationContext);
    }

    public void Dispose() => _limiter?.Dispose();
}
