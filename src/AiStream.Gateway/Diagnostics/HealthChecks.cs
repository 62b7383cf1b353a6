using AiStream.Gateway.Providers;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AiStream.Gateway.Diagnostics;

/// <summary>
/// Ready once the tokenizer vocabulary is loaded, so no request pays for the load. External dependencies
/// (Redis) add their own checks with the <c>ready</c> tag.
/// </summary>
internal sealed class TokenizerReadyCheck(TokenCounter tokens) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(tokens.IsLoaded ? HealthCheckResult.Healthy("tokenizer loaded") : HealthCheckResult.Unhealthy("tokenizer still loading"));
}

/// <summary>Loads the tokenizer in the background right after start.</summary>
internal sealed class TokenizerWarmup(TokenCounter tokens) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(tokens.Warm, stoppingToken);
}
