using System.Text.Json;
using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>Checks events published from outside against the AG-UI vocabulary and the fields each type needs.</summary>
internal static class EventValidator
{
    /// <summary>Longest step name: a timeline label, which catch-up repeats for every joiner.</summary>
    public const int MaxStepName = 200;

    /// <summary>Returns an error message, or null when <paramref name="node"/> is a valid event (then normalised in place).</summary>
    public static string? Validate(JsonNode? node, string sessionId, out JsonObject? body)
    {
        body = node as JsonObject;
        if (body is null)
        {
            return "must be a JSON object";
        }

        // Nulls are left out of the log; the server owns positions.
        foreach (var key in body.Where(p => p.Value is null).Select(p => p.Key).ToList())
        {
            body.Remove(key);
        }

        body.Remove("seq");
        if (body["type"] is not JsonValue typeValue || typeValue.GetValueKind() != JsonValueKind.String)
        {
            return "'type' must be a string";
        }

        var type = typeValue.GetValue<string>();
        if (!AgUi.All.Contains(type))
        {
            return $"'type' '{type}' is not an AG-UI event type ({string.Join(", ", AgUi.All.Order(StringComparer.Ordinal))})";
        }

        if (body["timestamp"] is { } timestamp && (timestamp.GetValueKind() != JsonValueKind.Number || !timestamp.AsValue().TryGetValue<long>(out _)))
        {
            return "'timestamp' must be integer milliseconds";
        }

        return type switch
        {
            AgUi.RunStarted => DefaultThread(body, sessionId) ?? String(body, "runId"),
            AgUi.RunFinished => DefaultThread(body, sessionId) ?? String(body, "runId") ?? Outcome(body),
            AgUi.RunError => String(body, "message"),
            AgUi.TextMessageStart => String(body, "messageId") ?? OptionalString(body, "role"),
            AgUi.TextMessageContent => String(body, "messageId") ?? String(body, "delta"),
            AgUi.TextMessageEnd => String(body, "messageId"),
            AgUi.ToolCallStart => String(body, "toolCallId") ?? String(body, "toolCallName") ?? OptionalString(body, "parentMessageId"),
            AgUi.ToolCallArgs => String(body, "toolCallId") ?? String(body, "delta", allowEmpty: true),
            AgUi.ToolCallEnd => String(body, "toolCallId"),
            AgUi.ToolCallResult => String(body, "messageId") ?? String(body, "toolCallId") ?? String(body, "content", allowEmpty: true),
            AgUi.StepStarted or AgUi.StepFinished => String(body, "stepName") ?? (body["stepName"]!.GetValue<string>().Length > MaxStepName
                ? $"'stepName' is at most {MaxStepName} characters" : null),
            AgUi.ReasoningStart or AgUi.ReasoningMessageStart or AgUi.ReasoningMessageEnd or AgUi.ReasoningEnd => String(body, "messageId"),
            AgUi.ReasoningMessageContent => String(body, "messageId") ?? String(body, "delta"),
            AgUi.StateSnapshot => body.ContainsKey("snapshot") ? null : "'snapshot' is required",
            AgUi.StateDelta => body["delta"] is JsonArray ops ? JsonPatch.Check(ops) : "'delta' must be a JSON Patch array",
            AgUi.MessagesSnapshot => body["messages"] is JsonArray ? null : "'messages' must be an array",
            AgUi.Custom => String(body, "name") ?? Reserved(body["name"]!.GetValue<string>()),
            _ => null,
        };
    }

    // presence.*, stream.* and conversation.* events are written by the gateway itself; a client publishing them could
    // fake who is here or a gap notice, or hide messages from the conversation.
    private static string? Reserved(string name) =>
        name.StartsWith("presence.", StringComparison.Ordinal) || name.StartsWith("stream.", StringComparison.Ordinal)
            || name.StartsWith("conversation.", StringComparison.Ordinal)
            ? $"CUSTOM event names starting with 'presence.', 'stream.' or 'conversation.' are reserved for the gateway ('{name}')"
            : null;

    private static string? Outcome(JsonObject body) =>
        body["outcome"] is null || (body["outcome"] is JsonObject outcome && outcome["type"] is JsonValue type && type.GetValueKind() == JsonValueKind.String)
            ? null
            : "'outcome' must be an object with a string 'type' (success, cancelled or interrupt)";

    private static string? DefaultThread(JsonObject body, string sessionId)
    {
        body["threadId"] ??= sessionId;
        return String(body, "threadId");
    }

    private static string? String(JsonObject body, string name, bool allowEmpty = false) =>
        body[name] is JsonValue value && value.GetValueKind() == JsonValueKind.String && (allowEmpty || value.GetValue<string>().Length > 0)
            ? null
            : $"'{name}' must be a {(allowEmpty ? "" : "non-empty ")}string";

    private static string? OptionalString(JsonObject body, string name) =>
        body[name] is null ? null : String(body, name);
}
