namespace AiStream.Gateway.Providers;

/// <summary>The <c>AiStream</c> configuration section: providers, public model names and the default model.</summary>
public sealed class AiStreamOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream";

    /// <summary>Name of the built-in simulated provider and model, added unless configuration defines that name itself.</summary>
    public const string BuiltInSimulatedName = "sim";

    /// <summary>Upstream providers by name.</summary>
    public Dictionary<string, ProviderOptions> Providers { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Public model names clients ask for, each routed to a provider.</summary>
    public Dictionary<string, ModelOptions> Models { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Model used when a request names none. Default <c>sim</c>.</summary>
    public string DefaultModel { get; set; } = BuiltInSimulatedName;
}

/// <summary>The provider types AiStream knows.</summary>
public static class ProviderTypes
{
    /// <summary>api.openai.com (or a compatible endpoint) with a bearer key.</summary>
    public const string OpenAI = "OpenAI";
    /// <summary>Azure OpenAI deployments with an <c>api-key</c>.</summary>
    public const string AzureOpenAI = "AzureOpenAI";
    /// <summary>Any server that speaks OpenAI's Chat Completions API: Ollama, vLLM, LM Studio.</summary>
    public const string OpenAICompatible = "OpenAICompatible";
    /// <summary>The built-in simulated model.</summary>
    public const string Simulated = "Simulated";

    /// <summary>All known types, in the order they are documented.</summary>
    public static readonly string[] All = [OpenAI, AzureOpenAI, OpenAICompatible, Simulated];
}

/// <summary>One upstream provider.</summary>
public sealed class ProviderOptions
{
    /// <summary>One of <see cref="ProviderTypes"/>. Required.</summary>
    public string? Type { get; set; }

    /// <summary>Base URL. Required for AzureOpenAI and OpenAICompatible; OpenAI defaults to https://api.openai.com/v1.</summary>
    public string? Endpoint { get; set; }

    /// <summary>API key. Required for OpenAI and AzureOpenAI, optional for OpenAICompatible.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Azure deployment name. Defaults to the model's <see cref="ModelOptions.UpstreamModel"/>.</summary>
    public string? Deployment { get; set; }

    /// <summary>Azure <c>api-version</c> query value. Default 2024-10-21.</summary>
    public string ApiVersion { get; set; } = "2024-10-21";

    /// <summary>Simulated: words streamed per second; 0 streams as fast as possible. Default 40.</summary>
    public double TokensPerSecond { get; set; } = 40;

    /// <summary>Simulated: delay before the first word, in milliseconds. Default 150.</summary>
    public int TimeToFirstTokenMs { get; set; } = 150;

    /// <summary>Retries of a transient failure before the first token (5xx, 408, 429, connect errors, time-to-first-token timeout). Default 2.</summary>
    public int MaxRetries { get; set; } = 2;

    /// <summary>Base delay of the jittered exponential backoff, in milliseconds. Default 200.</summary>
    public int RetryBaseDelayMs { get; set; } = 200;

    /// <summary>A 429 whose Retry-After is longer than this is not retried but falls back at once. Default 10 s.</summary>
    public double MaxRetryAfterSeconds { get; set; } = 10;

    /// <summary>Circuit breaker: failure ratio within the sampling window that opens the circuit. Default 0.5.</summary>
    public double BreakerFailureRatio { get; set; } = 0.5;

    /// <summary>Circuit breaker: attempts needed in the window before the ratio counts. Default 4.</summary>
    public int BreakerMinimumThroughput { get; set; } = 4;

    /// <summary>Circuit breaker: sampling window in seconds. Default 30.</summary>
    public double BreakerSamplingSeconds { get; set; } = 30;

    /// <summary>Circuit breaker: how long an open circuit skips the provider, in seconds. Default 30.</summary>
    public double BreakerBreakSeconds { get; set; } = 30;
}

/// <summary>One public model name.</summary>
public sealed class ModelOptions
{
    /// <summary>Name of the provider that serves it. Required.</summary>
    public string? Provider { get; set; }

    /// <summary>Model name sent upstream. Defaults to the public name.</summary>
    public string? UpstreamModel { get; set; }

    /// <summary>Other public model names tried in order when this one fails before its first token.</summary>
    public List<string> Fallbacks { get; set; } = [];

    /// <summary>Longest wait for the first chunk of one attempt, in seconds. Default 30.</summary>
    public double TimeToFirstTokenTimeoutSeconds { get; set; } = 30;

    /// <summary>Longest silence between two chunks once streaming, in seconds. Default 30.</summary>
    public double IdleTimeoutSeconds { get; set; } = 30;

    /// <summary>Longest wait for a whole non-streamed (<c>stream:false</c>) answer, in seconds. Default 300.</summary>
    public double RequestTimeoutSeconds { get; set; } = 300;
}
