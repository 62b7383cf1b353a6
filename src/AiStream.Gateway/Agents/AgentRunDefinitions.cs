using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;

namespace AiStream.Gateway.Agents;

/// <summary>What sessions ask of the Agents feature: rendered templates, agents and their tools bound to a run.</summary>
internal sealed class AgentRunDefinitions(PromptLibrary library, AgentToolbox toolbox, IServiceProvider services, Microsoft.Extensions.Options.IOptions<AgentsOptions> options)
    : IRunDefinitions
{
    /// <summary>Longest rendered prompt, in characters.</summary>
    public const int MaxRenderedChars = 256 * 1024;

    public async ValueTask<(RenderedPrompt? Prompt, ApiError? Error)> RenderPromptAsync(string name, JsonObject? variables, CancellationToken cancellationToken)
    {
        if (!library.TryGetPrompt(name, out var prompt))
        {
            var known = library.Prompts.Count == 0 ? "none are loaded" : "loaded: " + string.Join(", ", library.Prompts.Select(p => p.Name));
            return (null, ApiError.BadRequest($"Unknown prompt template '{name}' ({known}).", "prompt", "unknown_prompt"));
        }

        var arguments = new KernelArguments();
        var declared = prompt.Config.InputVariables.ToDictionary(v => v.Name, StringComparer.Ordinal);
        foreach (var (key, value) in variables ?? [])
        {
            if (!declared.ContainsKey(key))
            {
                return (null, ApiError.BadRequest(
                    $"Prompt template '{name}' has no variable '{key}' (it takes: {string.Join(", ", declared.Keys)}).", $"variables.{key}", "unknown_variable"));
            }

            if (value is null)
            {
                continue; // null is no value: the default applies, and a required variable is missing
            }

            arguments[key] = value switch
            {
                JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
                JsonValue v => v.ToJsonString(),
                _ => value.ToJsonString(),
            };
        }

        foreach (var variable in prompt.Config.InputVariables)
        {
            if (!arguments.ContainsName(variable.Name) && variable.Default is { } fallback)
            {
                arguments[variable.Name] = fallback is JsonElement { ValueKind: JsonValueKind.String } word ? word.GetString()
                    : fallback is JsonElement element ? element.GetRawText() : Convert.ToString(fallback, CultureInfo.InvariantCulture);
            }

            if (!arguments.ContainsName(variable.Name) && variable.IsRequired)
            {
                return (null, ApiError.BadRequest(
                    $"Prompt template '{name}' needs variable '{variable.Name}'{(variable.Description is { Length: > 0 } d ? $" ({d.TrimEnd('.')})" : "")}.",
                    $"variables.{variable.Name}", "missing_variable"));
            }
        }

        string text;
        try
        {
            text = await prompt.Template.RenderAsync(new Kernel(services), arguments, cancellationToken).ConfigureAwait(false);
        }
        catch (KernelException ex)
        {
            return (null, ApiError.BadRequest($"Prompt template '{name}' could not be rendered: {ex.Message}", "variables", "prompt_render_failed"));
        }

        if (text.Length > MaxRenderedChars)
        {
            return (null, ApiError.BadRequest($"The rendered prompt is longer than {MaxRenderedChars} characters.", "variables", "prompt_too_long"));
        }

        var settings = prompt.Config.DefaultExecutionSettings;
        return (new RenderedPrompt(prompt.Name, text.Trim(), settings?.ModelId, Number(settings, "max_tokens") is { } max ? (int)max : null,
            Number(settings, "temperature") is { } t ? (float)t : null), null);
    }

    public (RunAgent? Agent, ApiError? Error) FindAgent(string name)
    {
        if (!library.TryGetAgent(name, out var agent))
        {
            var known = library.Agents.Count == 0 ? "none are loaded" : "loaded: " + string.Join(", ", library.Agents.Select(a => a.Name));
            return (null, ApiError.BadRequest($"Unknown agent '{name}' ({known}).", "agent", "unknown_agent"));
        }

        return (new RunAgent(agent.Name, agent.Instructions, agent.Model, agent.Tools, agent.MaxSteps)
        {
            ToolTimeout = TimeSpan.FromSeconds(options.Value.ToolTimeoutSeconds),
            MaxToolResultChars = options.Value.MaxToolResultChars,
        }, null);
    }

    public IReadOnlyList<AIFunction> ToolsFor(RunAgent agent, RunToolContext context) => toolbox.For(agent.Tools, context);

    private static double? Number(PromptExecutionSettings? settings, string key) =>
        settings?.ExtensionData?.TryGetValue(key, out var value) != true ? null : value switch
        {
            JsonElement { ValueKind: JsonValueKind.Number } e => e.GetDouble(),
            JsonElement { ValueKind: JsonValueKind.String } e when double.TryParse(e.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
            IConvertible c => c.ToDouble(CultureInfo.InvariantCulture),
            _ => null,
        };
}
