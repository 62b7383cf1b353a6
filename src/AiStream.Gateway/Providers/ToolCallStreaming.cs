using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Providers;

/// <summary>
/// A piece of a tool call as the model streams it: the call's position in the turn, its id and name when this piece
/// carries them (the first does), and the next characters of its JSON arguments.
/// </summary>
internal sealed record ToolCallDelta(int Index, string? CallId, string? Name, string ArgumentsDelta);

/// <summary>
/// Microsoft.Extensions.AI hands over a tool call whole, once the model has finished it; a dashboard wants the
/// arguments as they stream. This reads the pieces from an update: the simulated model's
/// <see cref="ToolCallDeltaContent"/>, or the OpenAI (and Azure OpenAI) chunk the update was made from. No library
/// exposes them, so this small reader does.
/// </summary>
internal static class ToolCallStreaming
{
    /// <summary>
    /// The tool-call pieces an update carries; an empty array (no allocation) for the usual update, a text token, since
    /// this is read once per token.
    /// </summary>
    public static IReadOnlyList<ToolCallDelta> Deltas(ChatResponseUpdate update)
    {
        List<ToolCallDelta>? deltas = null;
        foreach (var content in update.Contents)
        {
            if (content is ToolCallDeltaContent delta)
            {
                (deltas ??= []).Add(delta.Delta);
            }
        }

        if (update.RawRepresentation is OpenAI.Chat.StreamingChatCompletionUpdate { ToolCallUpdates: { Count: > 0 } calls })
        {
            foreach (var call in calls)
            {
                var arguments = call.FunctionArgumentsUpdate is { } data && !data.IsEmpty ? data.ToString() : string.Empty;
                (deltas ??= []).Add(new ToolCallDelta(call.Index, string.IsNullOrEmpty(call.ToolCallId) ? null : call.ToolCallId,
                    string.IsNullOrEmpty(call.FunctionName) ? null : call.FunctionName, arguments));
            }
        }

        return deltas ?? (IReadOnlyList<ToolCallDelta>)[];
    }
}

/// <summary>A streamed piece of a tool call, as the simulated model sends it.</summary>
internal sealed class ToolCallDeltaContent(ToolCallDelta delta) : AIContent
{
    public ToolCallDelta Delta { get; } = delta;
}
