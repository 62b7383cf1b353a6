using AiStream.Gateway.Sessions;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Webhooks;

/// <summary>Webhooks out: subscriptions, the queue (in memory; Redis replaces it), the sender, the failures list.</summary>
internal static class WebhooksHosting
{
    public static IServiceCollection AddAiStreamWebhooks(this IServiceCollection services)
    {
        services.AddOptions<WebhooksOptions>()
            .Configure<IConfiguration>((o, c) => c.GetSection(WebhooksOptions.SectionName).Bind(o.Subscriptions))
            .ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<WebhooksOptions>, WebhooksOptionsValidator>());
        services.AddOptions<WebhookDeliveryOptions>().BindConfiguration(WebhookDeliveryOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<IWebhookQueue, InMemoryWebhookQueue>();
        // Receivers are the operator's own URLs; a redirect is not followed (it would carry the signed body elsewhere).
        services.AddHttpClient(WebhookSender.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(5) });
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISessionEventSink, WebhookEventSink>());
        services.AddHostedService<WebhookSender>();
        return services;
    }

    /// <summary>
    /// Wraps the session store (whichever is registered last: in memory, or Redis) so appends reach the event sinks.
    /// Called after every feature registered its store.
    /// </summary>
    public static IServiceCollection ObserveSessionAppends(this IServiceCollection services)
    {
        if (!services.Any(d => d.ServiceType == typeof(ISessionEventSink)))
        {
            return services;
        }

        var store = services.Last(d => d.ServiceType == typeof(ISessionStore));
        services.Replace(ServiceDescriptor.Singleton<ISessionStore>(sp => new ObservedSessionStore(
            store.ImplementationFactory is { } factory ? (ISessionStore)factory(sp)
                : store.ImplementationInstance as ISessionStore ?? (ISessionStore)ActivatorUtilities.CreateInstance(sp, store.ImplementationType!),
            sp.GetServices<ISessionEventSink>())));
        return services;
    }
}
