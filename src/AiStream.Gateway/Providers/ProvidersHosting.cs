using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Providers;

/// <summary>The LLM providers: options and their validation, the model catalog, chat clients, the tokenizer, and the upstream HTTP client.</summary>
internal static class ProvidersHosting
{
    /// <summary>Name of the <see cref="HttpClient"/> every upstream call goes through (the relay and the chat clients).</summary>
    public const string UpstreamHttpClient = "aistream-upstream";

    public static IServiceCollection AddAiStreamProviders(this IServiceCollection services)
    {
        services.AddOptions<AiStreamOptions>().BindConfiguration(AiStreamOptions.SectionName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<AiStreamOptions>, AiStreamOptionsSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<AiStreamOptions>, AiStreamOptionsValidator>());
        services.TryAddSingleton<ModelCatalog>();
        services.TryAddSingleton<TokenCounter>();
        services.TryAddSingleton<ChatClientFactory>();
        services.AddHttpClient(UpstreamHttpClient)
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
}
