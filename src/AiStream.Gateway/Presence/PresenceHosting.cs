using AiStream.Gateway.Sessions;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Presence;

/// <summary>Presence: the in-memory member store (Redis replaces it when configured) and how runs appear as members.</summary>
internal static class PresenceHosting
{
    public static IServiceCollection AddAiStreamPresence(this IServiceCollection services)
    {
        services.AddOptions<PresenceOptions>().BindConfiguration(PresenceOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        // The catch-up snapshot lists at most SnapshotCap members; the session log builds it.
        services.AddOptions<SessionsOptions>().PostConfigure<IOptions<PresenceOptions>>((sessions, presence) => sessions.PresenceSnapshotCap = presence.Value.SnapshotCap);
        services.TryAddSingleton<IPresenceStore, InMemoryPresenceStore>();
        services.TryAddSingleton<IRunPresence, RunPresence>();
        return services;
    }
}
