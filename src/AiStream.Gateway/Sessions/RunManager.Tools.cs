using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Sessions;

/// <summary>What a run is (a template, an agent) and an agent's tool steps.</summary>
internal sealed partial class RunManager
{
    /// <summary>The prompt template rendered, or the agent found; a 400 naming what is wrong.</summary>
    private async ValueTask<(RenderedPrompt? Prompt, RunAgent? Agent, ApiError? Error)> ResolveAsync(RunRequest request, CancellationToken cancellationToken)
    {
        if (request.Prompt is not null && request.Agent is not null)
        {
            return (null, null, ApiError.BadRequest("Give 'prompt' (a template) or 'agent', not both.", "agent"));
        }

        if (request.Variables is not null && request.Prompt is null)
        {
            return (null, null, ApiError.BadRequest("'variables' fill a prompt template: give 'prompt' too.", "variables"));
        }

        if (request.Prompt is { } name)
        {
            var (rendered, error) = await definitions.RenderPromptAsync(name, request.Variables, cancellationToken).ConfigureAwait(false);
            return (rendered, null, error);
        }

        if (request.Agent is { } agentName)
        {
            var (agent, error) = definitions.FindAgent(agentName);
            return (null, agent, error);
        }

        return (null, null, null);
    }

    /// <summary>
    /// One tool step: the call executed with the run's cancellation and the tool's time limit, its result (or its
    /// error, which the model sees and may recover from) logged as <c>TOOL_CALL_RESULT</c>.
    /// </summary>
    private async Task<ChatMessage> ToolStepAsync(ActiveRun run, RunTrace trace, IRunMember member, AIFunction? tool, FunctionCallContent call, CancellationToken token)
    {
        var agent = run.Agent!;
        await member.SetStateAsync(Status(run, "calling_tool", call.Name)).ConfigureAwait(false);
        trace.Step = "tool:" + call.Name;
        await AppendAsync(run, AgUi.Event(AgUi.StepStarted, ("stepName", trace.Step))).ConfigureAwait(false);

        string content;
        var failed = false;
        using var limit = new CancellationTokenSource(agent.ToolTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(token, limit.Token);
        try
        {
            if (tool is null)
            {
                throw new ArgumentException($"There is no tool named '{call.Name}'; the tools are: {string.Join(", ", agent.Tools)}.");
            }

            // A tool that ignores its token cannot hold the run: the wait ends at the time limit or the cancel.
            var value = await tool.InvokeAsync(new AIFunctionArguments(call.Arguments), linked.Token).AsTask().WaitAsync(linked.Token).ConfigureAwait(false);
            content = value switch
            {
                null => "null",
                string text => text,
                JsonElement { ValueKind: JsonValueKind.String } element => element.GetString() ?? string.Empty,
                JsonElement element => element.GetRawText(),
                _ => JsonSerializer.Serialize(value, AIJsonUtilities.DefaultOptions),
            };
        }
        catch (Exception) when (token.IsCancellationRequested)
        {
            throw new OperationCanceledException(token);
        }
        catch (Exception ex)
        {
            failed = true;
            if (ToolError(ex) is { } expected)
            {
                Log.ToolRefused(logger, run.SessionId, run.RunId, call.Name, expected); // bad arguments: no stack to log
            }
            else
            {
                Log.ToolFailed(logger, run.SessionId, run.RunId, call.Name, ex);
            }

            content = "Error: " + (limit.IsCancellationRequested ? $"the tool did not answer within {agent.ToolTimeout.TotalSeconds:0.###} s."
                : ToolError(ex) is { } reason ? reason : "the tool failed.");
        }

        if (content.Length > agent.MaxToolResultChars)
        {
            content = content[..agent.MaxToolResultChars] + "… (cut)";
        }

        var result = AgUi.Event(AgUi.ToolCallResult, ("messageId", NewId("msg")), ("toolCallId", call.CallId), ("content", content), ("role", "tool"));
        if (failed)
        {
            result["error"] = true;
        }

        await AppendAsync(run, result, AgUi.Event(AgUi.StepFinished, ("stepName", trace.Step))).ConfigureAwait(false);
        trace.Step = null;
        return new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, content)]);
    }

    /// <summary>
    /// The message of an error a tool raises on purpose to say its input was wrong (an <see cref="ArgumentException"/>:
    /// bad arguments, a refused state write, a tool that does not exist), which the model can act on. Anything else
    /// may name internals, so it stays in the gateway's log and the session sees "the tool failed".
    /// </summary>
    private static string? ToolError(Exception ex) => ex switch
    {
        ArgumentException => ex.Message,
        Microsoft.SemanticKernel.KernelException { InnerException: { } inner } => ToolError(inner),
        _ => null,
    };

    /// <summary>What the run's tools may touch: the session's state, read from the log and patched through the run's writer.</summary>
    private RunToolContext ToolContext(ActiveRun run) => new(run.SessionId, run.RunId,
        cancellationToken => store.StateAsync(run.SessionId, cancellationToken),
        async (patch, cancellationToken) =>
        {
            var current = await store.StateAsync(run.SessionId, cancellationToken).ConfigureAwait(false);
            if (JsonPatch.Check(patch) is { } invalid)
            {
                return invalid;
            }

            if (!JsonPatch.TryApply(current, (JsonArray)patch.DeepClone(), StateLimits.From(options.Value), out _, out var limitError))
            {
                return limitError ?? "the patch does not apply to the current state (does the parent path exist?)";
            }

            try
            {
                await AppendAsync(run, AgUi.Event(AgUi.StateDelta, ("delta", patch))).ConfigureAwait(false);
                return null;
            }
            catch (StateLimitExceededException ex)
            {
                return ex.Message;
            }
        });
}
