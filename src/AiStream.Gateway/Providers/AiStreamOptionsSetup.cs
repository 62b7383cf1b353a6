using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Providers;

/// <summary>Adds the built-in simulated provider and model so the gateway runs with no configuration at all.</summary>
internal sealed class AiStreamOptionsSetup : IPostConfigureOptions<AiStreamOptions>
{
    public void PostConfigure(string? name, AiStreamOptions options)
    {
        // Settings such as AiStream__Providers__sim__TokensPerSecond tune the built-in provider without restating its type.
        if (options.Providers.TryGetValue(AiStreamOptions.BuiltInSimulatedName, out var sim))
        {
            sim.Type ??= ProviderTypes.Simulated;
        }
        else
        {
            options.Providers[AiStreamOptions.BuiltInSimulatedName] = new ProviderOptions { Type = ProviderTypes.Simulated };
        }

        options.Models.TryAdd(AiStreamOptions.BuiltInSimulatedName, new ModelOptions { Provider = AiStreamOptions.BuiltInSimulatedName });
    }
}

/// <summary>Stops the start when the provider or model configuration is wrong, naming the offending key.</summary>
internal sealed class AiStreamOptionsValidator : IValidateOptions<AiStreamOptions>
{
    public ValidateOptionsResult Validate(string? name, AiStreamOptions options)
    {
        var errors = new List<string>();
        const string root = AiStreamOptions.SectionName;

        foreach (var (key, provider) in options.Providers)
        {
            var path = $"{root}:Providers:{key}";
            if (string.IsNullOrWhiteSpace(provider.Type))
            {
                errors.Add($"{path}:Type is required; expected one of {string.Join(", ", ProviderTypes.All)}.");
                continue;
            }

            var type = ProviderTypes.All.FirstOrDefault(t => string.Equals(t, provider.Type, StringComparison.OrdinalIgnoreCase));
            if (type is null)
            {
                errors.Add($"{path}:Type '{provider.Type}' is unknown; expected one of {string.Join(", ", ProviderTypes.All)}.");
                continue;
            }

            provider.Type = type;
            if (type is ProviderTypes.AzureOpenAI or ProviderTypes.OpenAICompatible && string.IsNullOrWhiteSpace(provider.Endpoint))
            {
                errors.Add($"{path}:Endpoint is required for a provider of type {type}.");
            }
            else if (type != ProviderTypes.Simulated && provider.Endpoint is { Length: > 0 } endpoint
                && (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)))
            {
                errors.Add($"{path}:Endpoint '{endpoint}' is not an absolute http or https URL.");
            }

            if (type is ProviderTypes.OpenAI or ProviderTypes.AzureOpenAI && string.IsNullOrWhiteSpace(provider.ApiKey))
            {
                errors.Add($"{path}:ApiKey is required for a provider of type {type}.");
            }

            if (provider.TokensPerSecond < 0) errors.Add($"{path}:TokensPerSecond must be 0 (unpaced) or more.");
            if (provider.TimeToFirstTokenMs < 0) errors.Add($"{path}:TimeToFirstTokenMs must be 0 or more.");
            if (provider.MaxRetries is < 0 or > 10) errors.Add($"{path}:MaxRetries must be between 0 and 10.");
            if (provider.RetryBaseDelayMs < 0) errors.Add($"{path}:RetryBaseDelayMs must be 0 or more.");
            if (provider.BreakerFailureRatio is <= 0 or > 1) errors.Add($"{path}:BreakerFailureRatio must be in (0, 1].");
            if (provider.BreakerMinimumThroughput < 2) errors.Add($"{path}:BreakerMinimumThroughput must be 2 or more.");
            if (provider.BreakerSamplingSeconds < 0.5) errors.Add($"{path}:BreakerSamplingSeconds must be 0.5 or more.");
            if (provider.BreakerBreakSeconds < 0.5) errors.Add($"{path}:BreakerBreakSeconds must be 0.5 or more.");
        }

        foreach (var (key, model) in options.Models)
        {
            var path = $"{root}:Models:{key}";
            if (string.IsNullOrWhiteSpace(model.Provider))
            {
                errors.Add($"{path}:Provider is required.");
            }
            else if (!options.Providers.ContainsKey(model.Provider))
            {
                errors.Add($"{path}:Provider '{model.Provider}' is not a configured provider.");
            }

            for (var i = 0; i < model.Fallbacks.Count; i++)
            {
                var fallback = model.Fallbacks[i];
                if (!options.Models.ContainsKey(fallback))
                {
                    errors.Add($"{path}:Fallbacks:{i} '{fallback}' is not a configured model.");
                }
                else if (string.Equals(fallback, key, StringComparison.OrdinalIgnoreCase))
                {
                    errors.Add($"{path}:Fallbacks:{i} names the model itself.");
                }
            }

            if (model.TimeToFirstTokenTimeoutSeconds <= 0) errors.Add($"{path}:TimeToFirstTokenTimeoutSeconds must be more than 0.");
            if (model.IdleTimeoutSeconds <= 0) errors.Add($"{path}:IdleTimeoutSeconds must be more than 0.");
            if (model.RequestTimeoutSeconds <= 0) errors.Add($"{path}:RequestTimeoutSeconds must be more than 0.");
        }

        if (!options.Models.ContainsKey(options.DefaultModel))
        {
            errors.Add($"{root}:DefaultModel '{options.DefaultModel}' is not a configured model.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
