using AiStream.Gateway.Agents;
using AiStream.Gateway.AiSdk;
using AiStream.Gateway.Api;
using AiStream.Gateway.Completions;
using AiStream.Gateway.Diagnostics;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;
using AiStream.Gateway.Scaleout;
using AiStream.Gateway.Security;
using AiStream.Gateway.Sessions;
using AiStream.Gateway.Transports;
using AiStream.Gateway.Webhooks;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Hosting;

/// <summary>
/// DI and endpoint wiring for the whole gateway: one call per feature, and the pipeline's order. Public so a host
/// application can reference the gateway, add services of its own (Semantic Kernel plugins for agents) and call
/// <c>builder.AddAiStream()</c> and <c>app.MapAiStream()</c> itself.
/// </summary>
public static class AiStreamHosting
{
    /// <summary>Registers every feature's services and options.</summary>
    public static WebApplicationBuilder AddAiStream(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddProblemDetails(options => options.CustomizeProblemDetails = ApiProblems.AddOpenAIError);
        services.TryAddSingleton(TimeProvider.System);
        services.AddAiStreamSecurity();
        services.AddAiStreamLimits();
        services.AddAiStreamProviders();
        services.AddAiStreamResilience();
        services.AddAiStreamCompletions();
        services.AddAiStreamDiagnostics();
        services.AddAiStreamSessions();
        services.AddAiStreamPresence();
        services.AddAiStreamAgents();
        services.AddAiStreamTransports(builder.Configuration);
        services.AddAiStreamWebhooks();
        // Last: with Redis configured it replaces the in-memory stores, run control, limit counters and webhook queue.
        services.AddAiStreamScaleout(builder.Configuration);
        // After every store is registered: webhooks hear of appends through the store the features use.
        services.ObserveSessionAppends();
        return builder;
    }

    /// <summary>Builds the pipeline (origins, static files, authentication, authorization, limits) and maps every endpoint.</summary>
    public static WebApplication MapAiStream(this WebApplication app)
    {
        var transports = app.Services.GetRequiredService<IOptions<TransportsOptions>>().Value;
        EventLoopIo.LogMode(app.Logger, EventLoopIo.InlineCompletions, transports.EventLoopIo);
        ThreadPoolFloor.Apply(app.Logger, transports.MinWorkerThreads);
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        // A foreign origin is refused before anything answers; listed ones get CORS.
        app.UseAiStreamOrigins();
        // The web app: public files only (it asks for a token when authentication is on), with a strict CSP.
        app.UseAiStreamWebApp();
        // One front door: every transport below is an endpoint behind the same authentication and authorization.
        app.UseRouting();
        app.UseAuthentication();
        app.UseAuthorization();
        // Limits count the caller, so they come after authentication.
        app.UseRateLimiter();
        app.MapAiStreamHealth();
        app.MapCompletions().RequireAuthorization(SecurityHosting.CompletionsPolicy);
        app.MapSessions();
        app.MapPresence();
        app.MapAgents();
        app.MapWebhooks();
        app.MapAiStreamTransports();
        app.MapAiSdk();
        return app;
    }
}
