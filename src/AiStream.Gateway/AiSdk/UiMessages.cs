using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;

namespace AiStream.Gateway.AiSdk;

/// <summary>
/// The AI SDK's request messages (<c>UIMessage[]</c>: <c>{id, role, parts}</c>) as the AG-UI messages a run takes.
/// <para>
/// The session log is the conversation: <c>useChat</c> sends its whole history with every request, and what the log
/// already holds is not added again. User and system messages are added by id (the run skips ids the log has). An
/// assistant message adds only the results of the client's own tools that the log is still waiting for, except when
/// the session has no conversation yet: then the history seeds it, assistant text included.
/// </para>
/// </summary>
internal static class UiMessages
{
    /// <summary>Most messages one request may carry.</summary>
    public const int MaxMessages = 10_000;

    /// <summary>Converts the request's messages; <paramref name="conversation"/> is the session's, in AG-UI shape.</summary>
    public static (JsonArray? Messages, ApiError? Error) ToAgUi(JsonNode? node, IReadOnlyList<JsonObject> conversation)
    {
        if (node is not JsonArray messages)
        {
            return (null, ApiError.BadRequest("'messages' must be an array of UI messages.", "messages"));
        }

        if (messages.Count > MaxMessages)
        {
            return (null, ApiError.BadRequest($"'messages' holds more than {MaxMessages} messages.", "messages"));
        }

        var seed = conversation.Count == 0;
        // The log's tool calls, and which of them have their result already.
        var calls = new HashSet<string>(StringComparer.Ordinal);
        var answered = new HashSet<string>(StringComparer.Ordinal);
        foreach (var message in conversation)
        {
            if (message["toolCalls"] is JsonArray toolCalls)
            {
                foreach (var call in toolCalls.OfType<JsonObject>())
                {
                    if (Str(call, "id") is { } id)
                    {
                        calls.Add(id);
                    }
                }
            }

            if (Str(message, "toolCallId") is { } answeredId)
            {
                answered.Add(answeredId);
            }
        }

        var result = new JsonArray();
        for (var i = 0; i < messages.Count; i++)
        {
            var at = $"messages[{i}]";
            if (messages[i] is not JsonObject message || Str(message, "role") is not ("user" or "system" or "assistant") || message["parts"] is not JsonArray parts)
            {
                return (null, ApiError.BadRequest($"{at} must be a UI message: an object with role user, system or assistant and an array of parts.", at));
            }

            if (message["id"] is { } idNode && (idNode.GetValueKind() != JsonValueKind.String || idNode.GetValue<string>().Length is 0 or > 256))
            {
                return (null, ApiError.BadRequest($"{at}.id must be a string of 1 to 256 characters.", at + ".id"));
            }

            var role = Str(message, "role")!;
            var id = Str(message, "id");
            var text = string.Join("\n", parts.OfType<JsonObject>().Where(p => Str(p, "type") == "text").Select(p => Str(p, "text")).OfType<string>());
            if (role != "assistant" || seed)
            {
                if (text.Length > 0)
                {
                    var converted = new JsonObject { ["role"] = role, ["content"] = text };
                    if (id is not null)
                    {
                        converted["id"] = id;
                    }

                    result.Add(converted);
                }

                continue;
            }

            // An assistant message the log wrote: only its client tool results are new.
            foreach (var part in parts.OfType<JsonObject>())
            {
                if (Str(part, "toolCallId") is not { } callId || !calls.Contains(callId) || answered.Contains(callId)
                    || Str(part, "state") is not ({ } state and ("output-available" or "output-error")))
                {
                    continue;
                }

                var content = state == "output-error"
                    ? "Error: " + (Str(part, "errorText") ?? "the tool failed")
                    : part["output"] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>()
                    : part["output"]?.ToJsonString() ?? "null";
                answered.Add(callId);
                // The id is the call's, so the same result sent again is recognised and not added twice.
                result.Add(new JsonObject { ["id"] = "result_" + callId, ["role"] = "tool", ["toolCallId"] = callId, ["content"] = content });
            }
        }

        return (result, null);
    }

    /// <summary>The id of the request's last user message, if it has one.</summary>
    public static string? LastUserMessageId(JsonNode? messages) =>
        (messages as JsonArray)?.OfType<JsonObject>().LastOrDefault(m => Str(m, "role") == "user") is { } last ? Str(last, "id") : null;

    private static string? Str(JsonObject o, string name) =>
        o[name] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : null;
}
