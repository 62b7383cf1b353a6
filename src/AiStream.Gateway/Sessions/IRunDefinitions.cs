using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// What a run may be besides one model call: a prompt template rendered into the user's message, or an agent that
/// calls tools over several steps. The Agents feature implements it (templates and agents are files under
/// <c>prompts/</c>, tools are Semantic Kernel functions); sessions only ask for the rendered text and the agent's plan.
/// </summary>
internal interface IRunDefinitions
{
    /// <summary>Renders prompt template <paramref name="name"/> with <paramref name="variables"/>; a 400 naming the unknown prompt or missing variable.</summary>
    ValueTask<(RenderedPrompt? Prompt, ApiError? Error)> RenderPromptAsync(string name, JsonObject? variables, CancellationToken cancellationToken);

    /// <summary>The agent called <paramref name="name"/>, or a 400 naming it when none is loaded.</summary>
    (RunAgent? Agent, ApiError? Error) FindAgent(string name);

    /// <summary>The agent's tools as functions the model may call, bound to one run (its session, its state writes).</summary>
    IReadOnlyList<AIFunction> ToolsFor(RunAgent agent, RunToolContext context);
}

/// <summary>A rendered prompt template: the user message text and the template's execution settings.</summary>
internal sealed record RenderedPrompt(string Name, string Text, string? Model, int? MaxOutputTokens, float? Temperature);

/// <summary>An agent as a run needs it: instructions, model, tool names, the step limit and the bounds on each tool call.</summary>
internal sealed record RunAgent(string Name, string Instructions, string? Model, IReadOnlyList<string> Tools, int MaxSteps)
{
    /// <summary>Most one tool call may take; past it the call fails and the model sees the error.</summary>
    public TimeSpan ToolTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest tool result the model and the log see; longer ones are cut.</summary>
    public int MaxToolResultChars { get; init; } = 16 * 1024;
}

/// <summary>
/// What a tool may touch of the run calling it: the session's shared state, read and patched through the run's own
/// writer (so a state write is a <c>STATE_DELTA</c> in the log, fenced like every other event of the run).
/// </summary>
internal sealed class RunToolContext(
    string sessionId,
    string runId,
    Func<CancellationToken, ValueTask<JsonNode?>> readState,
    Func<JsonArray, CancellationToken, ValueTask<string?>> patchState)
{
    public string SessionId { get; } = sessionId;

    public string RunId { get; } = runId;

    /// <summary>The session's shared state as it is now.</summary>
    public ValueTask<JsonNode?> ReadStateAsync(CancellationToken cancellationToken) => readState(cancellationToken);

    /// <summary>Applies a JSON Patch to the shared state as a <c>STATE_DELTA</c>; null when applied, else why not.</summary>
    public ValueTask<string?> PatchStateAsync(JsonArray patch, CancellationToken cancellationToken) => patchState(patch, cancellationToken);
}
