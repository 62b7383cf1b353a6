using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Completions;

/// <summary>The OpenAI-compatible proxy: its options and the relay.</summary>
internal static class CompletionsHosting
{
    public static IServiceCollection AddAiStreamCompletions(this IServiceCollection services)
    {
        services.AddOptions<CompletionsOptions>().BindConfiguration(CompletionsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<CompletionProxy>();
        services.TryAddSingleton<StartTime>();
        return services;
    }
}
