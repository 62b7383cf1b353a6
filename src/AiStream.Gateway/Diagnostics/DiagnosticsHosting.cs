using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Diagnostics;

/// <summary>Metrics, the tokenizer warm-up and the health endpoints.</summary>
internal static class DiagnosticsHosting
{
    public static IServiceCollection AddAiStreamDiagnostics(this IServiceCollection services)
    {
        services.AddMetrics();
        services.TryAddSingleton<AiStreamMetrics>();
        services.AddHostedService<TokenizerWarmup>();
        services.AddHealthChecks().AddCheck<TokenizerReadyCheck>("tokenizer", tags: ["ready"]);
        return services;
    }

    /// <summary>Liveness (<c>/healthz</c>: the process answers) and readiness (<c>/readyz</c>: every configured dependency is usable).</summary>
    public static void MapAiStreamHealth(this WebApplication app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready"), ResponseWriter = HealthReportWriter.WriteAsync })
            .AllowAnonymous();
    }
}
