using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Sessions;

/// <summary>Sessions: the in-memory event log (Redis replaces it when configured), runs, and the answers to session bounds.</summary>
internal static class SessionsHosting
{
    public static IServiceCollection AddAiStreamSessions(this IServiceCollection services)
    {
        services.AddOptions<SessionsOptions>().BindConfiguration(SessionsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<InMemorySessionStore>();
        services.TryAddSingleton<ISessionStore>(sp => sp.GetRequiredService<InMemorySessionStore>());
        services.TryAddSingleton<IRunControl, LocalRunControl>();
        services.TryAddSingleton<SessionLimitsHandler>();
        services.TryAddSingleton<SessionLimitsHubFilter>();
        services.AddExceptionHandler<SessionLimitsHandler>();
        services.Configure<HubOptions>(hub => hub.AddFilter<SessionLimitsHubFilter>());
        services.TryAddSingleton<RunManager>();
        return services;
    }
}
