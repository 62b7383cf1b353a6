using AiStream.Gateway.Api;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Scaleout;

/// <summary>Switches sessions, presence and run control to Redis when a Redis connection string is configured.</summary>
internal static class ScaleoutHosting
{
    /// <summary>The Redis connection string: <c>ConnectionStrings:Redis</c>, else <c>AiStream:Redis</c>; null keeps everything in memory.</summary>
    public static string? RedisConnectionString(IConfiguration configuration) =>
        configuration.GetConnectionString("Redis") is { Length: > 0 } fromConnectionStrings ? fromConnectionStrings
        : configuration["AiStream:Redis"] is { Length: > 0 } fromSection ? fromSection
        : null;

    public static IServiceCollection AddAiStreamScaleout(this IServiceCollection services, IConfiguration configuration)
    {
        // Both modes map "the store is unreachable" to 503 with Retry-After, for HTTP and for the hub.
        services.AddExceptionHandler<StoreUnavailableHandler>();
        services.Configure<HubOptions>(hub => hub.AddFilter<StoreUnavailableHubFilter>());

        var connectionString = RedisConnectionString(configuration);
        if (connectionString is null)
        {
            return services;
        }

        services.AddOptions<ScaleoutOptions>().BindConfiguration(ScaleoutOptions.SectionName)
            .PostConfigure(o => o.ConnectionString = connectionString)
            .ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<RedisConnection>();
        services.TryAddSingleton<RedisSessionStore>();
        // The in-memory implementations the features registered are replaced, whatever the order they were added in.
        services.Replace(ServiceDescriptor.Singleton<ISessionStore>(sp => sp.GetRequiredService<RedisSessionStore>()));
        services.TryAddSingleton<RedisPresenceStore>();
        services.Replace(ServiceDescriptor.Singleton<IPresenceStore>(sp => sp.GetRequiredService<RedisPresenceStore>()));
        services.Replace(ServiceDescriptor.Singleton<IRunControl, RedisRunControl>());
        services.Replace(ServiceDescriptor.Singleton<Limits.ILimitCounter, RedisLimitCounter>());
        services.TryAddSingleton<RedisConnectionSlots>();
        services.Replace(ServiceDescriptor.Singleton<Limits.ISharedConnectionSlots>(sp => sp.GetRequiredService<RedisConnectionSlots>()));
        services.TryAddSingleton<RedisWebhookQueue>();
        services.Replace(ServiceDescriptor.Singleton<Webhooks.IWebhookQueue>(sp => sp.GetRequiredService<RedisWebhookQueue>()));
        services.AddHostedService<ScaleoutMaintenance>();
        services.AddHealthChecks().AddCheck<RedisReadyCheck>("redis", tags: ["ready"]);
        return services;
    }

    /// <summary>A write Redis could not take: 503 problem+json with Retry-After, so clients retry instead of losing it.</summary>
    private sealed class StoreUnavailableHandler : IExceptionHandler
    {
        public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
        {
            if (exception is not SessionStoreUnavailableException unavailable || httpContext.Response.HasStarted)
            {
                return false;
            }

            httpContext.Response.Headers.RetryAfter = "1";
            var error = new ApiError(StatusCodes.Status503ServiceUnavailable, unavailable.Message, "service_unavailable", "store_unavailable", null);
            await error.ToResult().ExecuteAsync(httpContext).ConfigureAwait(false);
            return true;
        }
    }

    /// <summary>The same for hub calls: a HubException carries the message to the client instead of a generic error.</summary>
    private sealed class StoreUnavailableHubFilter : IHubFilter
    {
        public async ValueTask<object?> InvokeMethodAsync(HubInvocationContext invocationContext, Func<HubInvocationContext, ValueTask<object?>> next)
        {
            try
            {
                return await next(invocationContext).ConfigureAwait(false);
            }
            catch (SessionStoreUnavailableException ex)
            {
                throw new HubException(ex.Message);
            }
        }
    }
}
