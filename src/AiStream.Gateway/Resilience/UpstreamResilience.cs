using System.Collections.Concurrent;
using AiStream.Gateway.Providers;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;

namespace AiStream.Gateway.Resilience;

/// <summary>
/// One Polly pipeline per provider, shared by every request to it so the circuit breaker sees them all:
/// jittered exponential retry (honouring Retry-After) outside a circuit breaker. It wraps only the work before
/// the first token, so nothing that reached a client is ever retried.
/// </summary>
internal sealed partial class UpstreamResilience(IOptions<AiStreamOptions> options, TimeProvider time, ILogger<UpstreamResilience> logger)
{
    private readonly ConcurrentDictionary<string, ResiliencePipeline> _pipelines = new(StringComparer.OrdinalIgnoreCase);

    public ResiliencePipeline For(string providerName) => _pipelines.GetOrAdd(providerName, Build);

    private ResiliencePipeline Build(string providerName)
    {
        var provider = options.Value.Providers[providerName];
        var maxRetryAfter = TimeSpan.FromSeconds(provider.MaxRetryAfterSeconds);
        var builder = new ResiliencePipelineBuilder { Name = providerName, TimeProvider = time };

        if (provider.MaxRetries > 0)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = provider.MaxRetries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(provider.RetryBaseDelayMs),
                ShouldHandle = args => ValueTask.FromResult(
                    args.Outcome.Exception is UpstreamException { IsTransient: true } e && (e.RetryAfter is null || e.RetryAfter <= maxRetryAfter)),
                DelayGenerator = args => ValueTask.FromResult(
                    args.Outcome.Exception is UpstreamException { RetryAfter: { } retryAfter } ? retryAfter : (TimeSpan?)null),
                OnRetry = args =>
                {
                    Log.Retrying(logger, providerName, args.AttemptNumber + 1, args.RetryDelay.TotalMilliseconds, args.Outcome.Exception?.Message);
                    return ValueTask.CompletedTask;
                },
            });
        }

        builder.AddCircuitBreaker(new CircuitBreakerStrategyOptions
        {
            FailureRatio = provider.BreakerFailureRatio,
            MinimumThroughput = provider.BreakerMinimumThroughput,
            SamplingDuration = TimeSpan.FromSeconds(provider.BreakerSamplingSeconds),
            BreakDuration = TimeSpan.FromSeconds(provider.BreakerBreakSeconds),
            // Client errors say nothing about the provider's health; everything else does.
            ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is UpstreamException { IsClientError: false }),
            OnOpened = args =>
            {
                Log.CircuitOpened(logger, providerName, args.BreakDuration.TotalSeconds);
                return ValueTask.CompletedTask;
            },
            OnClosed = _ =>
            {
                Log.CircuitClosed(logger, providerName);
                return ValueTask.CompletedTask;
            },
        });

        return builder.Build();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Retrying provider {Provider}, attempt {Attempt}, in {DelayMs} ms after: {Reason}")]
        public static partial void Retrying(ILogger logger, string provider, int attempt, double delayMs, string? reason);

        [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Circuit for provider {Provider} opened for {BreakSeconds} s")]
        public static partial void CircuitOpened(ILogger logger, string provider, double breakSeconds);

        [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "Circuit for provider {Provider} closed")]
        public static partial void CircuitClosed(ILogger logger, string provider);
    }
}
