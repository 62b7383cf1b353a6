using System.Buffers;
using System.IO.Pipelines;
using System.Text.Encodings.Web;
using System.Text.Json;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.AiSdk;

/// <summary>
/// One run's session events as the Vercel AI SDK's UI message stream (the <c>ai</c> package 7.x,
/// <c>x-vercel-ai-ui-message-stream: v1</c>): <c>data: {chunk}</c> frames ending with <c>data: [DONE]</c>.
/// <para>
/// Stateful, one per response: the SDK refuses a delta for a text, reasoning or tool input it was not told had started,
/// so a stream resumed from a snapshot (which may begin mid-message) gets the start it needs, and every chunk type
/// written is one the SDK knows (an unknown one fails the chat). Written by hand because the SDK's stream format has
/// no .NET library; the frames are plain SSE <c>data:</c> lines.
/// </para>
/// </summary>
internal sealed class UiMessageStream : IDisposable
{
    /// <summary>Tool calls remembered per response (for their names and arguments); later ones stream without input.</summary>
    private const int MaxToolCalls = 1_000;

    /// <summary>Characters of one tool call's arguments kept to parse its input; past it the input is the text so far.</summary>
    private const int MaxArgumentChars = 1024 * 1024;

    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] FrameEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    // The frames are JSON on an SSE line, never HTML: only what JSON itself requires is escaped, so text in any script
    // stays as compact as the model wrote it.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly string? _messageId;
    private readonly HashSet<string> _texts = new(StringComparer.Ordinal);
    private readonly HashSet<string> _reasonings = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ToolCall> _toolCalls = new(StringComparer.Ordinal);
    private Utf8JsonWriter? _json;
    private bool _started;
    private int _openSteps;
    private bool _awaitsToolResults;

    /// <param name="messageId">
    /// The assistant message the stream writes: the one a request continues (after the client's tool results), or null
    /// for the run's id.
    /// </param>
    public UiMessageStream(string? messageId = null) => _messageId = messageId;

    /// <summary>True once the stream ended (<c>finish</c>, <c>abort</c> or <c>error</c>, then <c>[DONE]</c>).</summary>
    public bool Ended { get; private set; }

    /// <summary>Writes the chunks <paramref name="e"/> becomes (often one, sometimes none); true when it ended the stream.</summary>
    public bool Write(PipeWriter writer, SessionEvent e)
    {
        if (Ended)
        {
            return true;
        }

        if (_started && e.Type == AgUi.TextMessageContent && e.MessageId is { } textId)
        {
            // The event of every token: its message and text are on the event already, so it is not parsed again.
            OpenText(writer, textId);
            Chunk(writer, "text-delta", ("id", textId), ("delta", e.Delta ?? string.Empty));
            return false;
        }

        using var document = JsonDocument.Parse(e.Json);
        var body = document.RootElement;
        if (!_started && e.Type != AgUi.RunStarted)
        {
            Start(writer, e.RunId);
        }

        switch (e.Type)
        {
            case AgUi.RunStarted:
                Start(writer, Str(body, "runId") ?? e.RunId);
                break;
            case AgUi.StepStarted:
                _openSteps++;
                Chunk(writer, "start-step");
                break;
            case AgUi.StepFinished when _openSteps > 0:
                _openSteps--;
                // The SDK forgets open text at a step's end: whatever is still open is ended with it.
                _texts.Clear();
                _reasonings.Clear();
                Chunk(writer, "finish-step");
                break;
            case AgUi.TextMessageStart when Str(body, "messageId") is { } id:
                OpenText(writer, id);
                break;
            case AgUi.TextMessageContent when Str(body, "messageId") is { } id:
                // Only before the start (a resume from the snapshot); after it, the path above.
                OpenText(writer, id);
                Chunk(writer, "text-delta", ("id", id), ("delta", Str(body, "delta") ?? string.Empty));
                break;
            case AgUi.TextMessageEnd when Str(body, "messageId") is { } id && _texts.Remove(id):
                Chunk(writer, "text-end", ("id", id));
                break;
            case AgUi.ReasoningMessageStart when Str(body, "messageId") is { } id:
                OpenReasoning(writer, id);
                break;
            case AgUi.ReasoningMessageContent when Str(body, "messageId") is { } id:
                OpenReasoning(writer, id);
                Chunk(writer, "reasoning-delta", ("id", id), ("delta", Str(body, "delta") ?? string.Empty));
                break;
            case AgUi.ReasoningMessageEnd when Str(body, "messageId") is { } id && _reasonings.Remove(id):
                Chunk(writer, "reasoning-end", ("id", id));
                break;
            case AgUi.ToolCallStart when Str(body, "toolCallId") is { } id:
                OpenToolCall(writer, id, Str(body, "toolCallName") ?? "tool");
                break;
            case AgUi.ToolCallArgs when Str(body, "toolCallId") is { } id && _toolCalls.TryGetValue(id, out var call):
                var delta = Str(body, "delta") ?? string.Empty;
                if (!call.Cut && call.Arguments.Length + delta.Length <= MaxArgumentChars)
                {
                    call.Arguments.Append(delta);
                }
                else
                {
                    call.Cut = true; // nothing after a piece that did not fit, so the input is a prefix of what was sent
                }

                Chunk(writer, "tool-input-delta", ("toolCallId", id), ("inputTextDelta", delta));
                break;
            case AgUi.ToolCallEnd when Str(body, "toolCallId") is { } id && _toolCalls.TryGetValue(id, out var ended) && !ended.InputAvailable:
                ended.InputAvailable = true;
                _awaitsToolResults = true;
                InputAvailable(writer, id, ended);
                break;
            case AgUi.ToolCallResult when Str(body, "toolCallId") is { } id && _toolCalls.TryGetValue(id, out var answered):
                if (!answered.InputAvailable)
                {
                    answered.InputAvailable = true;
                    InputAvailable(writer, id, answered);
                }

                answered.Answered = true;
                EnsureStep(writer);
                _awaitsToolResults = _toolCalls.Values.Any(c => c.InputAvailable && !c.Answered);
                var content = Str(body, "content") ?? string.Empty;
                if (body.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.True)
                {
                    Chunk(writer, "tool-output-error", ("toolCallId", id), ("errorText", content));
                }
                else
                {
                    Chunk(writer, "tool-output-available", ("toolCallId", id), ("output", content));
                }

                break;
            case AgUi.StateSnapshot when body.TryGetProperty("snapshot", out var snapshot):
                // One part, replaced by each snapshot (same type and id), so the message holds the latest state.
                Data(writer, "data-state", "state", snapshot, transient: false);
                break;
            case AgUi.StateDelta when body.TryGetProperty("delta", out var patch):
                Data(writer, "data-state-delta", null, patch, transient: true);
                break;
            case AgUi.Custom when Str(body, "name") is { Length: > 0 } name:
                Data(writer, "data-" + name, null, body.TryGetProperty("value", out var value) ? value : default, transient: false);
                break;
            case AgUi.RunError:
                Chunk(writer, "error", ("errorText", Str(body, "message") ?? "The run failed."));
                End(writer);
                break;
            case AgUi.RunFinished:
                Finish(writer, body);
                break;
        }

        return Ended;
    }

    public void Dispose() => _json?.Dispose();

    /// <summary>Ends the stream with an error chunk (the run's events could not be followed to its end).</summary>
    public void Fail(PipeWriter writer, string message)
    {
        if (!Ended)
        {
            if (!_started)
            {
                Start(writer, null);
            }

            Chunk(writer, "error", ("errorText", message));
            End(writer);
        }
    }

    private void Start(PipeWriter writer, string? runId)
    {
        if (_started)
        {
            return;
        }

        _started = true;
        // The run's id is the assistant message's: every viewer and every resume of the run names the same message.
        runId = _messageId ?? runId;
        if (runId is null)
        {
            Chunk(writer, "start");
        }
        else
        {
            Chunk(writer, "start", ("messageId", runId));
        }
    }

    /// <summary>
    /// A plain run has no AG-UI steps, but the SDK counts one per model call (its "last step" decides whether tool
    /// results are complete): its content gets a step of its own, ended with the run.
    /// </summary>
    private void EnsureStep(PipeWriter writer)
    {
        if (_openSteps == 0)
        {
            _openSteps++;
            Chunk(writer, "start-step");
        }
    }

    private void OpenText(PipeWriter writer, string id)
    {
        if (_texts.Add(id))
        {
            EnsureStep(writer);
            Chunk(writer, "text-start", ("id", id));
        }
    }

    private void OpenReasoning(PipeWriter writer, string id)
    {
        if (_reasonings.Add(id))
        {
            EnsureStep(writer);
            Chunk(writer, "reasoning-start", ("id", id));
        }
    }

    private void OpenToolCall(PipeWriter writer, string id, string name)
    {
        if (_toolCalls.ContainsKey(id) || _toolCalls.Count >= MaxToolCalls)
        {
            return;
        }

        _toolCalls[id] = new ToolCall(name);
        EnsureStep(writer);
        Chunk(writer, "tool-input-start", ("toolCallId", id), ("toolName", name));
    }

    private void InputAvailable(PipeWriter writer, string id, ToolCall call)
    {
        var json = Writer(writer);
        json.WriteStartObject();
        json.WriteString("type", "tool-input-available");
        json.WriteString("toolCallId", id);
        json.WriteString("toolName", call.Name);
        json.WritePropertyName("input");
        var arguments = call.Arguments.ToString();
        try
        {
            using var input = JsonDocument.Parse(arguments.Length == 0 ? "{}" : arguments);
            input.RootElement.WriteTo(json);
        }
        catch (JsonException)
        {
            json.WriteStringValue(arguments); // not JSON (or cut at the bound): the text as the model wrote it
        }

        json.WriteEndObject();
        EndFrame(writer, json);
    }

    private void Finish(PipeWriter writer, JsonElement body)
    {
        var outcome = body.TryGetProperty("outcome", out var o) && o.ValueKind == JsonValueKind.Object ? Str(o, "type") : null;
        var reason = outcome == "cancelled" ? Str(o, "reason") ?? "requested" : null;
        if (reason == "requested")
        {
            // Someone stopped it: the SDK's abort, as its own stop button would.
            Chunk(writer, "abort", ("reason", reason));
        }
        else if (reason is not null)
        {
            // Nobody asked (the gateway stopping, the model going idle): a failure, and said so.
            Chunk(writer, "error", ("errorText", $"The run was cancelled ({reason})."));
        }
        else
        {
            while (_openSteps > 0)
            {
                _openSteps--;
                Chunk(writer, "finish-step");
            }

            // A run that ends on calls to the client's own tools waits for their results: the SDK's "tool-calls".
            Chunk(writer, "finish", ("finishReason", _awaitsToolResults ? "tool-calls" : "stop"));
        }

        End(writer);
    }

    private void End(PipeWriter writer)
    {
        writer.Write(Done);
        Ended = true;
    }

    private void Data(PipeWriter writer, string type, string? id, JsonElement data, bool transient)
    {
        var json = Writer(writer);
        json.WriteStartObject();
        json.WriteString("type", type);
        if (id is not null)
        {
            json.WriteString("id", id);
        }

        // "data" must be present (null when the event had none).
        json.WritePropertyName("data");
        if (data.ValueKind == JsonValueKind.Undefined)
        {
            json.WriteNullValue();
        }
        else
        {
            data.WriteTo(json);
        }

        if (transient)
        {
            json.WriteBoolean("transient", true);
        }

        json.WriteEndObject();
        EndFrame(writer, json);
    }

    private void Chunk(PipeWriter writer, string type, params ReadOnlySpan<(string Name, string Value)> fields)
    {
        var json = Writer(writer);
        json.WriteStartObject();
        json.WriteString("type", type);
        foreach (var (name, value) in fields)
        {
            json.WriteString(name, value);
        }

        json.WriteEndObject();
        EndFrame(writer, json);
    }

    private Utf8JsonWriter Writer(PipeWriter writer)
    {
        writer.Write(DataPrefix);
        if (_json is null)
        {
            _json = new Utf8JsonWriter(writer, WriterOptions);
        }
        else
        {
            _json.Reset(writer);
        }

        return _json;
    }

    private static void EndFrame(PipeWriter writer, Utf8JsonWriter json)
    {
        json.Flush();
        writer.Write(FrameEnd);
    }

    private static string? Str(JsonElement body, string name) =>
        body.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private sealed class ToolCall(string name)
    {
        public string Name { get; } = name;

        public System.Text.StringBuilder Arguments { get; } = new();

        public bool InputAvailable { get; set; }

        public bool Answered { get; set; }

        public bool Cut { get; set; }
    }
}
