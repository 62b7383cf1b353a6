using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.JsonPatch.SystemTextJson;

namespace AiStream.Client;

/// <summary>
/// A session's events folded into what a UI renders: the messages (with text as it streams, reasoning, tool calls with
/// their arguments and results), the steps of the run in progress, and the shared state. Feed it every event of a
/// watch, catch-up snapshots included; it is the same model whether it saw the session from the start or joined late.
/// </summary>
public sealed class Conversation
{
    private readonly List<ConversationMessage> _messages = [];
    private readonly Dictionary<string, ConversationMessage> _byId = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ToolCall> _calls = new(StringComparer.Ordinal);
    private readonly List<AgentStep> _steps = [];

    /// <summary>The messages in order: <c>user</c>, <c>assistant</c> (text and tool calls), <c>reasoning</c>, <c>system</c>.</summary>
    public IReadOnlyList<ConversationMessage> Messages => _messages;

    /// <summary>The steps of the run in progress, or of the last run.</summary>
    public IReadOnlyList<AgentStep> Steps => _steps;

    /// <summary>The session's shared state.</summary>
    public JsonNode? State { get; private set; } = new JsonObject();

    /// <summary>The run in progress, if any.</summary>
    public string? ActiveRunId { get; private set; }

    /// <summary>Why the last run failed (<c>RUN_ERROR</c>'s code and message), or null.</summary>
    public string? LastError { get; private set; }

    /// <summary>Every tool call by id.</summary>
    public IReadOnlyDictionary<string, ToolCall> ToolCalls => _calls;

    /// <summary>Folds one event in.</summary>
    public void Apply(SessionEvent e)
    {
        switch (e.Type)
        {
            case "MESSAGES_SNAPSHOT":
                Reset(e.Data["messages"] as JsonArray ?? []);
                break;
            case "STATE_SNAPSHOT":
                State = e.Data["snapshot"]?.DeepClone();
                break;
            case "STATE_DELTA" when e.Data["delta"] is JsonArray delta:
                ApplyPatch(delta);
                break;
            case "RUN_STARTED":
                if (ActiveRunId != e.Str("runId"))
                {
                    _steps.Clear();
                }

                ActiveRunId = e.Str("runId");
                LastError = null;
                break;
            case "RUN_FINISHED":
            case "RUN_ERROR":
                ActiveRunId = null;
                LastError = e.Type == "RUN_ERROR" ? $"{e.Str("code")}: {e.Str("message")}" : null;
                foreach (var message in _messages)
                {
                    message.IsStreaming = false;
                }

                break;
            case "CUSTOM" when e.Name == "conversation.superseded" && e.Data["value"] is JsonObject { } value && value["messageIds"] is JsonArray superseded:
                // A regenerated answer replaced these: they leave the conversation, as on the server.
                foreach (var id in superseded.OfType<JsonValue>().Where(v => v.GetValueKind() == JsonValueKind.String).Select(v => v.GetValue<string>()))
                {
                    if (_byId.Remove(id, out var gone))
                    {
                        _messages.Remove(gone);
                    }
                }

                break;
            case "STEP_STARTED":
                _steps.Add(new AgentStep(e.Str("stepName") ?? ""));
                break;
            case "STEP_FINISHED":
                if (_steps.LastOrDefault(s => !s.IsFinished && s.Name == e.Str("stepName")) is { } step)
                {
                    step.IsFinished = true;
                }

                break;
            case "TEXT_MESSAGE_START":
                Message(e.Str("messageId")!, e.Str("role") ?? "assistant").IsStreaming = true;
                break;
            case "TEXT_MESSAGE_CONTENT":
            case "REASONING_MESSAGE_CONTENT":
                Message(e.Str("messageId")!, e.Type == "REASONING_MESSAGE_CONTENT" ? "reasoning" : "assistant").Append(e.Str("delta"));
                break;
            case "TEXT_MESSAGE_END":
            case "REASONING_MESSAGE_END":
                Message(e.Str("messageId")!, "assistant").IsStreaming = false;
                break;
            case "REASONING_MESSAGE_START":
                Message(e.Str("messageId")!, "reasoning").IsStreaming = true;
                break;
            case "TOOL_CALL_START":
                var call = new ToolCall(e.Str("toolCallId")!, e.Str("toolCallName") ?? "");
                _calls[call.Id] = call;
                Message(e.Str("parentMessageId") ?? call.Id, "assistant").AddToolCall(call);
                break;
            case "TOOL_CALL_ARGS" when _calls.TryGetValue(e.Str("toolCallId") ?? "", out var streaming):
                streaming.AppendArguments(e.Str("delta"));
                break;
            case "TOOL_CALL_END" when _calls.TryGetValue(e.Str("toolCallId") ?? "", out var ended):
                ended.IsComplete = true;
                break;
            case "TOOL_CALL_RESULT" when _calls.TryGetValue(e.Str("toolCallId") ?? "", out var answered):
                answered.Result = e.Str("content");
                answered.IsError = e.Data["error"] is JsonValue error && error.TryGetValue<bool>(out var failed) && failed;
                break;
        }
    }

    private void Reset(JsonArray messages)
    {
        _messages.Clear();
        _byId.Clear();
        _calls.Clear();
        foreach (var m in messages.OfType<JsonObject>())
        {
            var role = (m["role"] as JsonValue)?.ToString() ?? "assistant";
            if (role == "tool")
            {
                if (_calls.TryGetValue((m["toolCallId"] as JsonValue)?.ToString() ?? "", out var call))
                {
                    call.Result = (m["content"] as JsonValue)?.ToString();
                }

                continue;
            }

            var message = Message((m["id"] as JsonValue)?.ToString() ?? Guid.NewGuid().ToString("N"), role);
            message.Append((m["content"] as JsonValue)?.ToString());
            foreach (var c in (m["toolCalls"] as JsonArray ?? []).OfType<JsonObject>())
            {
                var call = new ToolCall((c["id"] as JsonValue)?.ToString() ?? "", (c["function"]?["name"] as JsonValue)?.ToString() ?? "") { IsComplete = true };
                call.AppendArguments((c["function"]?["arguments"] as JsonValue)?.ToString());
                _calls[call.Id] = call;
                message.AddToolCall(call);
            }
        }
    }

    private ConversationMessage Message(string id, string role)
    {
        if (!_byId.TryGetValue(id, out var message))
        {
            message = new ConversationMessage(id, role);
            _byId[id] = message;
            _messages.Add(message);
        }

        return message;
    }

    /// <summary>The JSON Patch applied with Microsoft.AspNetCore.JsonPatch.SystemTextJson; a patch that does not apply is skipped, as the gateway does.</summary>
    private void ApplyPatch(JsonArray delta)
    {
        try
        {
            var patch = JsonSerializer.Deserialize<JsonPatchDocument>(delta.ToJsonString());
            var target = State as JsonObject ?? new JsonObject();
            patch?.ApplyTo(target);
            State = target;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException or Microsoft.AspNetCore.JsonPatch.SystemTextJson.Exceptions.JsonPatchException)
        {
            // Not applicable to this state; the gateway's log skipped it too.
        }
    }
}

/// <summary>One message as a UI shows it.</summary>
public sealed class ConversationMessage(string id, string role)
{
    private readonly StringBuilder _content = new();
    private readonly List<ToolCall> _toolCalls = [];

    /// <summary>The message id.</summary>
    public string Id { get; } = id;

    /// <summary><c>user</c>, <c>assistant</c>, <c>reasoning</c>, <c>system</c>.</summary>
    public string Role { get; } = role;

    /// <summary>The text so far.</summary>
    public string Content => _content.ToString();

    /// <summary>The tool calls the message made, in order.</summary>
    public IReadOnlyList<ToolCall> ToolCalls => _toolCalls;

    /// <summary>True while its text is still streaming.</summary>
    public bool IsStreaming { get; internal set; }

    internal void Append(string? text) => _content.Append(text);

    internal void AddToolCall(ToolCall call) => _toolCalls.Add(call);
}

/// <summary>A tool call: its arguments as they stream, then its result.</summary>
public sealed class ToolCall(string id, string name)
{
    private readonly StringBuilder _arguments = new();

    /// <summary>The call id.</summary>
    public string Id { get; } = id;

    /// <summary>The tool's name.</summary>
    public string Name { get; } = name;

    /// <summary>The JSON arguments so far.</summary>
    public string Arguments => _arguments.ToString();

    /// <summary>True once the arguments are complete.</summary>
    public bool IsComplete { get; internal set; }

    /// <summary>The tool's result, once it ran.</summary>
    public string? Result { get; internal set; }

    /// <summary>True when the tool failed (its result is the error the model saw).</summary>
    public bool IsError { get; internal set; }

    internal void AppendArguments(string? delta) => _arguments.Append(delta);
}

/// <summary>A step of an agent run (<c>model:1</c>, <c>tool:calculate</c>, …).</summary>
public sealed class AgentStep(string name)
{
    /// <summary>The step's name.</summary>
    public string Name { get; } = name;

    /// <summary>True once it finished.</summary>
    public bool IsFinished { get; internal set; }
}
