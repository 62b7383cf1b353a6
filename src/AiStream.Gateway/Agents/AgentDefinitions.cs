using System.Text.Json.Nodes;
using Microsoft.SemanticKernel;

namespace AiStream.Gateway.Agents;

/// <summary>A prompt template loaded from <c>prompts/&lt;name&gt;.yaml</c>: Semantic Kernel's prompt template config, parsed once.</summary>
/// <param name="Name">The file's template name (the <c>name</c> key, else the file name without extension).</param>
/// <param name="Config">The template config as Semantic Kernel reads it (template, input variables, execution settings).</param>
/// <param name="Template">The compiled template, rendered by Semantic Kernel's template engine.</param>
/// <param name="File">The file it came from, for log lines.</param>
internal sealed record PromptDefinition(string Name, PromptTemplateConfig Config, IPromptTemplate Template, string File)
{
    public string? Description => Config.Description;
}

/// <summary>An agent loaded from <c>prompts/agents/&lt;name&gt;.yaml</c>.</summary>
/// <param name="Name">The agent's name (the <c>name</c> key, else the file name without extension).</param>
/// <param name="Description">What it does, for listings.</param>
/// <param name="Instructions">Its system instructions.</param>
/// <param name="Model">The public model name it runs on; null for the gateway's default model.</param>
/// <param name="Tools">Names of the tools (Semantic Kernel functions) it may call.</param>
/// <param name="MaxSteps">Most model turns in one run; past it the run ends with <c>RUN_ERROR</c> code <c>max_steps</c>.</param>
/// <param name="File">The file it came from, for log lines.</param>
internal sealed record AgentDefinition(string Name, string? Description, string Instructions, string? Model, IReadOnlyList<string> Tools, int MaxSteps, string File);

/// <summary>The variables a template declares, for listings.</summary>
internal sealed record PromptVariable(string Name, string? Description, bool Required, JsonNode? Default);
