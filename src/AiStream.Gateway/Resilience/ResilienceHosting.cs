using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Resilience;

/// <summary>The upstream resilience pipelines (retry, fallback, circuit breaker per provider).</summary>
internal static class ResilienceHosting
{
    public static IServiceCollection AddAiStreamResilience(this IServiceCollection services)
    {
        services.TryAddSingleton<UpstreamResilience>();
        return services;
    }
}
