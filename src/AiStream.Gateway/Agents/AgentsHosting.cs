using AiStream.Gateway.Sessions;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Agents;

/// <summary>Agents: prompt templates and agent definitions from <c>prompts/</c>, and the tools agents call.</summary>
internal static class AgentsHosting
{
    public static IServiceCollection AddAiStreamAgents(this IServiceCollection services)
    {
        services.AddOptions<AgentsOptions>().BindConfiguration(AgentsOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<AgentToolbox>();
        services.TryAddSingleton<PromptLibrary>();
        services.TryAddSingleton<IRunDefinitions, AgentRunDefinitions>();
        services.AddHostedService<PromptLibraryLoader>();
        // A tool that throws is an outcome the model sees, and the run logs it (RunManager's "tool failed", with the
        // exception): Semantic Kernel's own error line for the same throw would make every bad argument an error.
        services.Configure<LoggerFilterOptions>(o => o.AddFilter("Microsoft.SemanticKernel.KernelFunction", LogLevel.Critical));
        return services;
    }
}

/// <summary>Reads the prompts folder at start; any invalid file stops the start with one line per problem.</summary>
internal sealed class PromptLibraryLoader(PromptLibrary library) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var errors = library.Load();
        return errors.Count == 0 ? Task.CompletedTask : throw new PromptDefinitionsException(errors);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>The prompts folder holds invalid definitions; the gateway does not start.</summary>
internal sealed class PromptDefinitionsException(IReadOnlyList<string> errors)
    : Exception("Invalid prompt definitions: " + string.Join("; ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}
