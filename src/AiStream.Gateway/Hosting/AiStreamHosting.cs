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
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Hosting;

/// <summary>DI and endpoint wiring for the whole gateway, one call per feature.</summary>
internal static class AiStreamHosting
{
    public static WebApplicationBuilder AddAiStream(this WebApplicationBuilder builder)
    {
        // Before anything opens a socket: the runtime reads this switch once.
        EventLoopIo.ConfigureRuntime(builder.Configuration);
        var services = builder.Services;
        services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
        {
            // Routing's own answers (404 unknown path, 405 wrong method) carry OpenAI's error object like every other error.
            if (!context.ProblemDetails.Extensions.ContainsKey("error"))
            {
                var status = context.ProblemDetails.Status ?? context.HttpContext.Response.StatusCode;
                var code = status switch { 404 => "not_found", 405 => "method_not_allowed", _ => "http_" + status.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                context.ProblemDetails.Extensions["error"] = new System.Text.Json.Nodes.JsonObject
                {
                    ["message"] = context.ProblemDetails.Title ?? "Error",
                    ["type"] = "invalid_request_error",
                    ["code"] = code,
                };
            }
        });
        services.TryAddSingleton(TimeProvider.System);
        services.AddAiStreamSecurity();
        services.AddAiStreamLimits();
        services.AddAiStreamProviders();
        services.AddAiStreamCompletions();
        services.AddAiStreamDiagnostics();
        // Before sessions and presence: with Redis configured it registers the shared stores first.
        services.AddAiStreamScaleout(builder.Configuration);
        services.AddAiStreamSessions();
        services.AddAiStreamPresence();
        services.AddAiStreamTransports(builder.Configuration);
        return builder;
    }

    public static WebApplication MapAiStream(this WebApplication app)
    {
        var transports = app.Services.GetRequiredService<IOptions<TransportsOptions>>().Value;
        EventLoopIo.LogMode(app.Logger, EventLoopIo.InlineCompletions, transports.EventLoopIo);
        ThreadPoolFloor.Apply(app.Logger, transports.MinWorkerThreads);
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        // A foreign origin is refused before anything answers; listed ones get CORS.
        app.UseAiStreamOrigins();
        // The demo page: public files only (it asks for a token when authentication is on).
        app.UseDefaultFiles();
        app.UseStaticFiles();
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
        app.MapSessionSse();
        app.MapAgUi();
        app.MapHub<SessionHub>("/hubs/sessions", options =>
        {
            options.AllowStatefulReconnects = true;
            // A connection ends when its token expires; the client reconnects with a fresh one and resumes.
            options.CloseOnAuthenticationExpiration = true;
        });
        return app;
    }

    private static IServiceCollection AddAiStreamProviders(this IServiceCollection services)
    {
        services.AddOptions<AiStreamOptions>().BindConfiguration(AiStreamOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<AiStreamOptions>, AiStreamOptionsSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AiStreamOptions>, AiStreamOptionsValidator>());
        services.TryAddSingleton<ModelCatalog>();
        services.TryAddSingleton<TokenCounter>();
        services.TryAddSingleton<ChatClientFactory>();
        services.TryAddSingleton<UpstreamResilience>();
        return services;
    }

    private static IServiceCollection AddAiStreamCompletions(this IServiceCollection services)
    {
        services.AddOptions<CompletionsOptions>().BindConfiguration(CompletionsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<CompletionProxy>();
        services.TryAddSingleton<StartTime>();
        services.AddHttpClient(CompletionProxy.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                PooledConnectionLifetime = TimeSpan.FromMinutes(2),
                ConnectTimeout = TimeSpan.FromSeconds(10),
                AutomaticDecompression = System.Net.DecompressionMethods.None,
                UseCookies = false,
                // Never drain an abandoned upstream body to reuse the connection: closing it is what tells the
                // provider to stop generating (and billing).
                MaxResponseDrainSize = 0,
                ResponseDrainTimeout = TimeSpan.Zero,
            })
            // Timeouts are per model (time to first token, idle), enforced by the proxy itself.
            .ConfigureHttpClient(client => client.Timeout = Timeout.InfiniteTimeSpan)
            .RemoveAllLoggers();
        return services;
    }

    private static IServiceCollection AddAiStreamSessions(this IServiceCollection services)
    {
        services.AddOptions<SessionsOptions>().BindConfiguration(SessionsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<ISessionStore, InMemorySessionStore>();
        services.TryAddSingleton<SessionLimitsHandler>();
        services.TryAddSingleton<SessionLimitsHubFilter>();
        services.AddExceptionHandler<SessionLimitsHandler>();
        services.AddSignalR(hub => hub.AddFilter<SessionLimitsHubFilter>());
        services.TryAddSingleton<RunManager>();
        return services;
    }

    private static IServiceCollection AddAiStreamPresence(this IServiceCollection services)
    {
        services.AddOptions<PresenceOptions>().BindConfiguration(PresenceOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<IPresenceStore, InMemoryPresenceStore>();
        return services;
    }

    private static IServiceCollection AddAiStreamTransports(this IServiceCollection services, ConfigurationManager configuration)
    {
        services.AddOptions<TransportsOptions>().BindConfiguration(TransportsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<HubSubscriptions>();
        services.TryAddSingleton<SessionSseWatch>();
        services.TryAddSingleton<WatchTicker>();
        // Kestrel's limits (Kestrel:Limits:*) from configuration; the host binds only its endpoints by itself.
        services.Configure<KestrelServerOptions>(configuration.GetSection("Kestrel"));
        services.AddSignalR(options => options.StatefulReconnectBufferSize = 1024 * 1024);
        services.AddOptions<Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions>()
            .Configure<IOptions<TransportsOptions>>((sockets, transports) =>
            {
                TcpKeepAlive.Apply(sockets, transports.Value.TcpKeepAliveSeconds);
                EventLoopIo.Apply(sockets, transports.Value.EventLoopIo);
            });
        return services;
    }

    private static IServiceCollection AddAiStreamDiagnostics(this IServiceCollection services)
    {
        services.AddMetrics();
        services.TryAddSingleton<AiStreamMetrics>();
        services.AddHostedService<TokenizerWarmup>();
        services.AddHealthChecks().AddCheck<TokenizerReadyCheck>("tokenizer", tags: ["ready"]);
        return services;
    }

    private static void MapAiStreamHealth(this WebApplication app)
    {
        // Liveness: the process answers. Readiness: every configured dependency is usable.
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false }).AllowAnonymous();
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready"), ResponseWriter = HealthReportWriter.WriteAsync })
            .AllowAnonymous();
    }
}
