using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Transports;

/// <summary>The transports: SSE watches, the SignalR hub (the one place SignalR is added), AG-UI, and Kestrel's socket settings.</summary>
internal static class TransportsHosting
{
    public static IServiceCollection AddAiStreamTransports(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<TransportsOptions>().BindConfiguration(TransportsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<HubSubscriptions>();
        services.TryAddSingleton<SessionSseWatch>();
        services.TryAddSingleton<WatchTicker>();
        // Kestrel's limits (Kestrel:Limits:*) from configuration; the host binds only its endpoints by itself.
        services.Configure<KestrelServerOptions>(configuration.GetSection("Kestrel"));
        // Other features add their hub filters with Configure<HubOptions>.
        services.AddSignalR(options => options.StatefulReconnectBufferSize = 1024 * 1024);
        services.AddOptions<SocketTransportOptions>()
            .Configure<IOptions<TransportsOptions>>((sockets, transports) =>
            {
                TcpKeepAlive.Apply(sockets, transports.Value.TcpKeepAliveSeconds);
                EventLoopIo.Apply(sockets, transports.Value.EventLoopIo);
            });
        return services;
    }

    /// <summary>The transports' endpoints: the SSE watch, AG-UI and the session hub.</summary>
    public static WebApplication MapAiStreamTransports(this WebApplication app)
    {
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
}
