using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// One event of a session log, in the AG-UI vocabulary. Serialised once, at append, with its <c>seq</c> inside;
/// every transport writes these same bytes.
/// </summary>
internal sealed class SessionEvent
{
    /// <summary>Most characters one merged delta grows to; past it a behind subscriber queues a new event instead.</summary>
    public const int MaxMergedChars = 64 * 1024;

    private byte[]? _json;
    private byte[]? _sseFrame;
    private string? _seqText;
    private string? _delta;
    private StringBuilder? _merged;

    /// <summary>Position in the session: strictly increasing, the id a client resumes from.</summary>
    public required long Seq { get; internal set; }

    /// <summary>The position as text, for SSE <c>id:</c> lines; made once and shared by every watcher.</summary>
    public string SeqText => _seqText ??= Seq.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public required string Type { get; init; }

    /// <summary>For text events: the message, so a slow subscriber's deltas can be merged.</summary>
    public string? MessageId { get; init; }

    /// <summary>For <c>TEXT_MESSAGE_CONTENT</c>: the text.</summary>
    public string? Delta
    {
        get => _merged?.ToString() ?? _delta;
        init => _delta = value;
    }

    /// <summary>The run that produced the event, when a run did.</summary>
    public string? RunId { get; internal set; }

    /// <summary>Milliseconds since the Unix epoch.</summary>
    public required long Timestamp { get; internal set; }

    /// <summary>When the log appended it (milliseconds since the epoch); what the age bound looks at.</summary>
    public long AppendedAt { get; init; }

    /// <summary>The event's JSON, <c>seq</c> included. A merged event is serialised when first read, by its writer.</summary>
    public byte[] Json
    {
        get => _json ??= SerializeMerged();
        init => _json = value;
    }

    /// <summary>
    /// The whole Server-Sent Events frame, <c>id: &lt;seq&gt;\ndata: &lt;json&gt;\n\n</c>, built once and written as is to
    /// every SSE watcher (compact JSON never holds a raw newline, so one <c>data:</c> line carries it).
    /// </summary>
    public byte[] SseFrame => _sseFrame ??= BuildSseFrame();

    /// <summary>
    /// True when a behind subscriber may merge the next delta into this event: its text is still under
    /// <see cref="MaxMergedChars"/> (measured without building the string) and, if merged already, not yet serialised.
    /// </summary>
    public bool AcceptsMoreText => (_merged?.Length ?? _delta?.Length ?? 0) < MaxMergedChars && (_merged is null || _json is null);

    /// <summary>Serialises <paramref name="body"/> (which must carry its type) with <paramref name="seq"/> and a timestamp.</summary>
    public static SessionEvent Create(JsonObject body, long seq, long timestamp, string? runId)
    {
        if (body["timestamp"] is not JsonValue ts || ts.GetValueKind() != JsonValueKind.Number)
        {
            body["timestamp"] = timestamp;
        }

        body["seq"] = seq;
        var type = body["type"]!.GetValue<string>();
        return new SessionEvent
        {
            Seq = seq,
            Type = type,
            MessageId = (body["messageId"] as JsonValue)?.GetValueKind() == JsonValueKind.String ? body["messageId"]!.GetValue<string>() : null,
            Delta = type == AgUi.TextMessageContent ? (body["delta"] as JsonValue)?.ToString() : null,
            RunId = runId,
            Timestamp = body["timestamp"]!.GetValue<long>(),
            AppendedAt = timestamp,
            Json = JsonSerializer.SerializeToUtf8Bytes(body, SessionsJsonContext.Default.JsonObject),
        };
    }

    /// <summary>
    /// An event read back from a shared log: <paramref name="json"/> already carries its <c>seq</c> and timestamp. Also
    /// returns the parsed body, which the projection needs.
    /// </summary>
    public static (SessionEvent Event, JsonObject Body) FromStored(byte[] json, long seq, string? runId, long appendedAt) =>
        FromStored(json, (JsonObject)JsonNode.Parse(json)!, seq, runId, appendedAt);

    /// <summary>The same, for a writer that still holds the parsed <paramref name="body"/> of <paramref name="json"/>.</summary>
    public static (SessionEvent Event, JsonObject Body) FromStored(byte[] json, JsonObject body, long seq, string? runId, long appendedAt)
    {
        var type = body["type"]!.GetValue<string>();
        var e = new SessionEvent
        {
            Seq = seq,
            Type = type,
            MessageId = (body["messageId"] as JsonValue)?.GetValueKind() == JsonValueKind.String ? body["messageId"]!.GetValue<string>() : null,
            Delta = type == AgUi.TextMessageContent ? (body["delta"] as JsonValue)?.ToString() : null,
            RunId = runId,
            Timestamp = body["timestamp"] is JsonValue ts && ts.GetValueKind() == JsonValueKind.Number ? ts.GetValue<long>() : appendedAt,
            AppendedAt = appendedAt,
            Json = json,
        };
        return (e, body);
    }

    /// <summary>
    /// A <c>TEXT_MESSAGE_CONTENT</c> holding this one's text followed by <paramref name="next"/>'s: what a behind
    /// subscriber gets. The first merge makes a subscriber-owned event; later merges append to it in place, and it is
    /// serialised once, when the writer takes it (outside the log's lock), so merging stays linear.
    /// </summary>
    public SessionEvent MergeWith(SessionEvent next)
    {
        if (_merged is not null && _json is null)
        {
            _merged!.Append(next.Delta);
            Seq = next.Seq;
            _seqText = null;
            Timestamp = next.Timestamp;
            RunId = next.RunId;
            return this;
        }

        return new SessionEvent
        {
            Seq = next.Seq,
            Type = AgUi.TextMessageContent,
            MessageId = MessageId,
            RunId = next.RunId,
            Timestamp = next.Timestamp,
            AppendedAt = next.AppendedAt,
            _merged = new StringBuilder(Delta).Append(next.Delta),
        };
    }

    public JsonObject ToJsonObject() => (JsonObject)JsonNode.Parse(Json)!;

    private byte[] BuildSseFrame()
    {
        var json = Json;
        var id = SeqText;
        var frame = new byte[4 + id.Length + 7 + json.Length + 2];
        "id: "u8.CopyTo(frame);
        var at = 4 + Encoding.ASCII.GetBytes(id, frame.AsSpan(4));
        "\ndata: "u8.CopyTo(frame.AsSpan(at));
        at += 7;
        json.CopyTo(frame.AsSpan(at));
        "\n\n"u8.CopyTo(frame.AsSpan(at + json.Length));
        return frame;
    }

    private byte[] SerializeMerged()
    {
        var body = new JsonObject
        {
            ["type"] = AgUi.TextMessageContent,
            ["messageId"] = MessageId,
            ["delta"] = _merged!.ToString(),
            ["timestamp"] = Timestamp,
            ["seq"] = Seq,
        };
        return JsonSerializer.SerializeToUtf8Bytes(body, SessionsJsonContext.Default.JsonObject);
    }
}

/// <summary>The AG-UI 1.0 event types a session log carries.</summary>
internal static class AgUi
{
    public const string RunStarted = "RUN_STARTED";
    public const string RunFinished = "RUN_FINISHED";
    public const string RunError = "RUN_ERROR";
    public const string TextMessageStart = "TEXT_MESSAGE_START";
    public const string TextMessageContent = "TEXT_MESSAGE_CONTENT";
    public const string TextMessageEnd = "TEXT_MESSAGE_END";
    public const string ToolCallStart = "TOOL_CALL_START";
    public const string ToolCallArgs = "TOOL_CALL_ARGS";
    public const string ToolCallEnd = "TOOL_CALL_END";
    public const string ToolCallResult = "TOOL_CALL_RESULT";
    public const string StepStarted = "STEP_STARTED";
    public const string StepFinished = "STEP_FINISHED";
    public const string StateSnapshot = "STATE_SNAPSHOT";
    public const string StateDelta = "STATE_DELTA";
    public const string MessagesSnapshot = "MESSAGES_SNAPSHOT";
    public const string Custom = "CUSTOM";
    public const string ReasoningStart = "REASONING_START";
    public const string ReasoningMessageStart = "REASONING_MESSAGE_START";
    public const string ReasoningMessageContent = "REASONING_MESSAGE_CONTENT";
    public const string ReasoningMessageEnd = "REASONING_MESSAGE_END";
    public const string ReasoningEnd = "REASONING_END";

    public static readonly HashSet<string> All =
    [
        RunStarted, RunFinished, RunError, TextMessageStart, TextMessageContent, TextMessageEnd, ToolCallStart, ToolCallArgs,
        ToolCallEnd, ToolCallResult, StepStarted, StepFinished, StateSnapshot, StateDelta, MessagesSnapshot, Custom,
        ReasoningStart, ReasoningMessageStart, ReasoningMessageContent, ReasoningMessageEnd, ReasoningEnd,
    ];

    /// <summary>An event body with its type first and null fields left out.</summary>
    public static JsonObject Event(string type, params (string Name, JsonNode? Value)[] fields)
    {
        var body = new JsonObject { ["type"] = type };
        foreach (var (name, value) in fields)
        {
            if (value is not null)
            {
                body[name] = value;
            }
        }

        return body;
    }
}

/// <summary>Source-generated serialization for the sessions feature.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(JsonObject))]
[JsonSerializable(typeof(JsonArray))]
[JsonSerializable(typeof(PublishResult))]
[JsonSerializable(typeof(RunAccepted))]
[JsonSerializable(typeof(RunCancelResult))]
[JsonSerializable(typeof(SessionInfo))]
internal sealed partial class SessionsJsonContext : JsonSerializerContext;

/// <summary>Answer to a publish: the positions assigned, in order.</summary>
internal sealed record PublishResult([property: JsonPropertyName("seqs")] IReadOnlyList<long> Seqs, [property: JsonPropertyName("replayed")] bool Replayed);

/// <summary>Answer to starting a run.</summary>
internal sealed record RunAccepted([property: JsonPropertyName("runId")] string RunId, [property: JsonPropertyName("sessionId")] string SessionId);

/// <summary>Answer to cancelling a run.</summary>
internal sealed record RunCancelResult([property: JsonPropertyName("runId")] string RunId, [property: JsonPropertyName("outcome")] string Outcome);

/// <summary>What <c>GET /api/sessions/{id}</c> says about a session.</summary>
internal sealed record SessionInfo(
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("headSeq")] long HeadSeq,
    [property: JsonPropertyName("firstSeq")] long FirstSeq,
    [property: JsonPropertyName("watchers")] int Watchers,
    [property: JsonPropertyName("activeRuns")] IReadOnlyList<string> ActiveRuns)
{
    /// <summary>
    /// Of <see cref="ActiveRuns"/>, those the gateway runs, oldest first (the rest were published by clients: nothing
    /// to stop). Not part of the answer.
    /// </summary>
    [JsonIgnore]
    public IReadOnlyList<string> GatewayRuns { get; init; } = [];
}
