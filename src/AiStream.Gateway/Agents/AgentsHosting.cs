using Microsoft.Extensions.DependencyInjection.Extensions;

namespace AiStream.Gateway.Agents;

/// <summary>Agents: prompt templates and agent definitions from <c>prompts/</c>, and the tools agents call.</summary>
internal static class AgentsHosting
{
    public static IServiceCollection AddAiStreamAgents(this IServiceCollection services)
    {
        services.TryAddSingleton<AgentToolbox>();
        return services;
    }
}
