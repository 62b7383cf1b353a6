using System.ClientModel;
using System.Collections.Concurrent;
using AiStream.Gateway.Providers.Simulated;
using Azure.AI.OpenAI;
using Microsoft.Extensions.AI;
using OpenAI;

namespace AiStream.Gateway.Providers;

/// <summary>
/// Gives the <see cref="IChatClient"/> for a public model name: the path used wherever the gateway itself consumes
/// model output (session runs and agents). Azure goes through Azure.AI.OpenAI, everything else through the OpenAI client.
/// </summary>
internal sealed class ChatClientFactory(ModelCatalog catalog, TokenCounter tokens, TimeProvider time, IHttpClientFactory http) : IDisposable
{
    private readonly ConcurrentDictionary<string, IChatClient> _clients = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The client for <paramref name="model"/>, created once and reused.</summary>
    public IChatClient Get(string model)
    {
        if (!catalog.TryResolve(model, out var route))
        {
            throw new KeyNotFoundException($"Model '{model}' is not configured.");
        }

        return _clients.GetOrAdd(route.Name, _ => Create(route));
    }

    /// <summary>Creates the simulated client for a route; the /v1 endpoint renders its output as chunks.</summary>
    public IChatClient CreateSimulated(ModelRoute route) => new SimulatedChatClient(route.UpstreamModel, route.Provider, tokens, time);

    private IChatClient Create(ModelRoute route)
    {
        var provider = route.Provider;
        switch (provider.Type)
        {
            case ProviderTypes.Simulated:
                return CreateSimulated(route);
            case ProviderTypes.AzureOpenAI:
                // The SDKs' own retries are off: Polly's retry and breaker are the only ones, and they stop at the first token.
                var azure = new AzureOpenAIClient(new Uri(provider.Endpoint!), new ApiKeyCredential(provider.ApiKey!),
                    new AzureOpenAIClientOptions { RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0), NetworkTimeout = Timeout.InfiniteTimeSpan, Transport = Transport() });
                return azure.GetChatClient(provider.Deployment ?? route.UpstreamModel).AsIChatClient();
            default:
                var endpoint = new Uri(UpstreamUris.BaseFor(provider));
                // OpenAI-compatible servers often need no key; the client insists on one, so send a placeholder.
                var key = new ApiKeyCredential(string.IsNullOrEmpty(provider.ApiKey) ? "unused" : provider.ApiKey);
                var client = new OpenAIClient(key, new OpenAIClientOptions
                {
                    Endpoint = endpoint,
                    RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0),
                    Transport = Transport(),
                    NetworkTimeout = Timeout.InfiniteTimeSpan,
                });
                return client.GetChatClient(route.UpstreamModel).AsIChatClient();
        }
    }

    // The relay's HttpClient: it never drains an abandoned response, so cancelling a run closes the upstream request
    // at once (the SDK's default client would read on for up to 2 s, and the provider would keep generating).
    private System.ClientModel.Primitives.HttpClientPipelineTransport Transport() =>
        new(http.CreateClient(ProvidersHosting.UpstreamHttpClient));

    public void Dispose()
    {
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }
    }
}

/// <summary>Builds upstream URLs for the relay path.</summary>
internal static class UpstreamUris
{
    public const string OpenAIDefaultEndpoint = "https://api.openai.com/v1";

    public static string BaseFor(ProviderOptions provider) =>
        (string.IsNullOrWhiteSpace(provider.Endpoint) ? OpenAIDefaultEndpoint : provider.Endpoint).TrimEnd('/');

    public static Uri ChatCompletions(ModelRoute route)
    {
        var provider = route.Provider;
        if (provider.Type == ProviderTypes.AzureOpenAI)
        {
            var deployment = Uri.EscapeDataString(provider.Deployment ?? route.UpstreamModel);
            return new Uri($"{BaseFor(provider)}/openai/deployments/{deployment}/chat/completions?api-version={Uri.EscapeDataString(provider.ApiVersion)}");
        }

        return new Uri(BaseFor(provider) + "/chat/completions");
    }
}
