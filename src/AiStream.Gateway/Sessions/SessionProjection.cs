using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// What a session's log adds up to: the conversation, the shared state, and the runs in progress with their partial
/// text. It is what the catch-up snapshot is built from, so a joiner never needs the whole log replayed.
/// </summary>
internal sealed class SessionProjection(StateLimits limits, int maxMessages = int.MaxValue, long maxTextChars = long.MaxValue)
{
    /// <summary>
    /// The <c>CUSTOM</c> event a regenerate writes before its run: <c>{"messageIds": [...]}</c>, the answers it replaces,
    /// which leave the conversation.
    /// </summary>
    public const string Superseded = "conversation.superseded";

    /// <summary>Most superseded message ids remembered (and carried by checkpoints).</summary>
    private const int MaxSuperseded = 1_000;

    /// <summary>Most messages and tool calls in progress at once; starts past it are not summarised.</summary>
    private const int MaxOpen = 1_000;

    /// <summary>Most steps of one run the catch-up repeats.</summary>
    private const int MaxSteps = 256;

    // Approximate characters of the completed messages, so the catch-up conversation is bounded like the log is.
    private long _messageChars;

    private readonly List<JsonObject> _messages = [];
    private readonly Dictionary<string, JsonObject> _messagesById = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OpenMessage> _openMessages = new(StringComparer.Ordinal);
    private readonly Dictionary<string, OpenToolCall> _openToolCalls = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _activeRuns = new(StringComparer.Ordinal); // runId -> threadId
    // Active runs the gateway runs (their events are stored under their run id), in the order they started.
    private readonly Dictionary<string, long> _ownRuns = new(StringComparer.Ordinal);
    // Ids of superseded messages, newest MaxSuperseded, so a client sending them back does not add them again.
    private readonly HashSet<string> _superseded = new(StringComparer.Ordinal);
    private readonly Queue<string> _supersededOrder = new();
    private long _runsStarted;
    private readonly Dictionary<string, List<RunStep>> _steps = new(StringComparer.Ordinal); // runId -> its steps so far
    private readonly Dictionary<string, JsonObject> _presence = new(StringComparer.Ordinal);
    private int? _crowd; // the last presence.count's total while the session is crowded
    private JsonNode? _state = new JsonObject();

    /// <summary>The shared state.</summary>
    public JsonNode? State => _state;

    /// <summary>Runs started and not yet finished.</summary>
    public IReadOnlyCollection<string> ActiveRuns => _activeRuns.Keys;

    /// <summary>Completed messages in AG-UI shape (id, role, content, toolCalls, toolCallId).</summary>
    public IReadOnlyList<JsonObject> Messages => _messages;

    /// <summary>
    /// The newest run in progress whose events are stored under its run id (the gateway's own runs, not a
    /// <c>RUN_STARTED</c> someone published), or null.
    /// </summary>
    public string? NewestOwnRun() => _ownRuns.Count == 0 ? null : _ownRuns.MaxBy(r => r.Value).Key;

    /// <summary>The runs in progress that the gateway runs, oldest first.</summary>
    public IReadOnlyList<string> OwnRuns => [.. _ownRuns.OrderBy(r => r.Value).Select(r => r.Key)];

    public IReadOnlyList<string> OpenMessageIds(string runId) => _openMessages.Values.Where(m => m.RunId == runId).Select(m => m.Id).ToList();

    public bool HasMessage(string id) => _messagesById.ContainsKey(id) || _openMessages.ContainsKey(id) || _superseded.Contains(id);

    public void Apply(string type, JsonObject e, string? runId)
    {
        switch (type)
        {
            case AgUi.RunStarted:
                var startedRun = Str(e, "runId")!;
                if (runId is not null && runId == startedRun)
                {
                    _ownRuns[runId] = ++_runsStarted;
                }
                else if (_activeRuns.Count >= MaxOpen && !_activeRuns.ContainsKey(startedRun))
                {
                    break; // published starts are summarised up to a bound, like open messages
                }

                _activeRuns[startedRun] = Str(e, "threadId") ?? string.Empty;
                break;
            case AgUi.RunFinished or AgUi.RunError when (type == AgUi.RunFinished ? Str(e, "runId") : Str(e, "runId") ?? runId) is { } endedRun:
                // A run the gateway runs ends only with an end stored under its own id: a client publishing its end
                // does not end it (nor hide it from stop and resume). RUN_ERROR names no run in AG-UI; the gateway
                // knows which run wrote it.
                if (_ownRuns.ContainsKey(endedRun) && runId != endedRun)
                {
                    break;
                }

                _activeRuns.Remove(endedRun);
                _ownRuns.Remove(endedRun);
                _steps.Remove(endedRun);
                break;
            case AgUi.StepStarted when StepRun(runId) is { } stepRun:
                var steps = _steps.TryGetValue(stepRun, out var list) ? list : _steps[stepRun] = [];
                if (steps.Count < MaxSteps)
                {
                    steps.Add(new RunStep(Str(e, "stepName")!));
                }

                break;
            case AgUi.StepFinished when StepRun(runId) is { } stepRun && _steps.TryGetValue(stepRun, out var started):
                if (started.LastOrDefault(s => !s.Finished && s.Name == Str(e, "stepName")) is { } finished)
                {
                    finished.Finished = true;
                }

                break;
            case AgUi.TextMessageStart:
                var id = Str(e, "messageId")!;
                if (_openMessages.Count < MaxOpen || _openMessages.ContainsKey(id))
                {
                    _openMessages[id] = new OpenMessage(id, Str(e, "role") ?? "assistant", runId);
                }

                break;
            case AgUi.TextMessageContent:
                // Text in progress is bounded like the log: a start without an end cannot grow without limit.
                if (_openMessages.TryGetValue(Str(e, "messageId")!, out var open) && open.Text.Length < maxTextChars)
                {
                    open.Text.Append(Str(e, "delta"));
                }

                break;
            case AgUi.TextMessageEnd:
                if (_openMessages.Remove(Str(e, "messageId")!, out var ended))
                {
                    var message = MessageFor(ended.Id, ended.Role);
                    message["content"] = (Str(message, "content") ?? string.Empty) + ended.Text;
                    _messageChars += ended.Text.Length;
                    TrimMessages();
                }

                break;
            case AgUi.ToolCallStart:
                var callId = Str(e, "toolCallId")!;
                if (_openToolCalls.Count < MaxOpen || _openToolCalls.ContainsKey(callId))
                {
                    _openToolCalls[callId] = new OpenToolCall(callId, Str(e, "toolCallName")!, Str(e, "parentMessageId"), runId);
                }

                break;
            case AgUi.ToolCallArgs:
                if (_openToolCalls.TryGetValue(Str(e, "toolCallId")!, out var call) && call.Arguments.Length < maxTextChars)
                {
                    call.Arguments.Append(Str(e, "delta"));
                }

                break;
            case AgUi.ToolCallEnd:
                if (_openToolCalls.Remove(Str(e, "toolCallId")!, out var done))
                {
                    var parent = MessageFor(done.ParentMessageId ?? done.Id, "assistant");
                    var calls = parent["toolCalls"] as JsonArray ?? (JsonArray)(parent["toolCalls"] = new JsonArray());
                    calls.Add(new JsonObject
                    {
                        ["id"] = done.Id,
                        ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = done.Name, ["arguments"] = done.Arguments.ToString() },
                    });
                    _messageChars += done.Arguments.Length + done.Name.Length;
                    TrimMessages();
                }

                break;
            case AgUi.ToolCallResult:
                var result = MessageFor(Str(e, "messageId")!, "tool");
                result["content"] = Str(e, "content") ?? string.Empty;
                result["toolCallId"] = Str(e, "toolCallId");
                _messageChars += (Str(e, "content") ?? string.Empty).Length;
                TrimMessages();
                break;
            case AgUi.MessagesSnapshot:
                _messages.Clear();
                _messagesById.Clear();
                _messageChars = ((JsonArray)e["messages"]!).ToJsonString().Length;
                foreach (var m in ((JsonArray)e["messages"]!).OfType<JsonObject>())
                {
                    var copy = (JsonObject)m.DeepClone();
                    _messages.Add(copy);
                    if (Str(copy, "id") is { } mid)
                    {
                        _messagesById[mid] = copy;
                    }
                }

                TrimMessages();
                break;
            case AgUi.Custom when Str(e, "name") == Superseded && e["value"] is JsonObject { } superseded
                && superseded["messageIds"] is JsonArray supersededIds:
                // A regenerated answer replaces these: they leave the conversation, and their ids are remembered (a
                // bounded number), so a client sending them back does not add them again.
                foreach (var supersededId in supersededIds.OfType<JsonValue>().Where(v => v.GetValueKind() == JsonValueKind.String).Select(v => v.GetValue<string>()))
                {
                    if (_messagesById.Remove(supersededId, out var gone) && _messages.Remove(gone))
                    {
                        _messageChars = Math.Max(0, _messageChars - gone.ToJsonString().Length);
                    }

                    if (_superseded.Add(supersededId))
                    {
                        _supersededOrder.Enqueue(supersededId);
                        if (_supersededOrder.Count > MaxSuperseded)
                        {
                            _superseded.Remove(_supersededOrder.Dequeue());
                        }
                    }
                }

                break;
            case AgUi.StateSnapshot:
                // A log written before the limits (or past a racing check) must not poison the session: skip it.
                if (limits.Check(e["snapshot"]) is null)
                {
                    _state = e["snapshot"]?.DeepClone();
                }

                break;
            case AgUi.Custom when Str(e, "name") is { } name && name.StartsWith("presence.", StringComparison.Ordinal)
                && e["value"] is JsonObject member:
                var memberId = Str(member, "id");
                if (name == "presence.count")
                {
                    // A crowded session: joins and leaves are counted, not announced, so only the total is known.
                    _presence.Clear();
                    _crowd = member["members"] is JsonValue total && total.TryGetValue<int>(out var members) ? members : 0;
                }
                else if (name == "presence.snapshot")
                {
                    // Everyone present: from a checkpoint, or logged when a crowd is over (members announced again).
                    _presence.Clear();
                    _crowd = member["counted"] is JsonValue counted && counted.TryGetValue<bool>(out var isCounted) && isCounted
                        && member["total"] is JsonValue total && total.TryGetValue<int>(out var members) ? members : null;
                    foreach (var m in (member["members"] as JsonArray ?? []).OfType<JsonObject>())
                    {
                        if (Str(m, "id") is { } snapId)
                        {
                            _presence[snapId] = (JsonObject)m.DeepClone();
                        }
                    }
                }
                else if (memberId is null)
                {
                    break;
                }
                else if (name == "presence.leave")
                {
                    _presence.Remove(memberId);
                    _crowd = null; // announced one by one: not (or no longer) crowded
                }
                else if (name is "presence.join" or "presence.update")
                {
                    _presence[memberId] = (JsonObject)member.DeepClone();
                    _crowd = null;
                }

                break;
            case AgUi.StateDelta:
                if (JsonPatch.TryApply(_state, (JsonArray)e["delta"]!, limits, out var patched, out _))
                {
                    _state = patched;
                }

                break;
        }
    }

    /// <summary>
    /// Null when the state events of <paramref name="bodies"/>, applied in order to the current state, keep it within
    /// the limits; else why not. Nothing changes: it works on a copy.
    /// </summary>
    public string? CheckState(IReadOnlyList<JsonObject> bodies)
    {
        var candidate = _state;
        foreach (var e in bodies)
        {
            switch (Str(e, "type"))
            {
                case AgUi.StateSnapshot:
                    if (limits.Check(e["snapshot"]) is { } snapshotError)
                    {
                        return snapshotError;
                    }

                    candidate = e["snapshot"];
                    break;
                case AgUi.StateDelta when e["delta"] is JsonArray ops:
                    if (JsonPatch.TryApply(candidate, ops, limits, out var patched, out var limitError))
                    {
                        candidate = patched;
                    }
                    else if (limitError is not null)
                    {
                        return limitError;
                    }

                    break;
            }
        }

        return null;
    }

    /// <summary>
    /// The catch-up: <c>MESSAGES_SNAPSHOT</c> and <c>STATE_SNAPSHOT</c>, then for each run in progress <c>RUN_STARTED</c>
    /// and its open text messages (start plus one content with the text so far) and open tool calls.
    /// </summary>
    /// <param name="presenceCap">Most members the presence snapshot lists; the total is always given.</param>
    public IEnumerable<(JsonObject Body, string? RunId)> Snapshot(int presenceCap)
    {
        yield return (AgUi.Event(AgUi.MessagesSnapshot, ("messages", new JsonArray(_messages.Select(m => (JsonNode)m.DeepClone()).ToArray()))), null);
        if (_superseded.Count > 0)
        {
            // Which ids were taken out, so a checkpoint restores them (a joiner's fold finds none of them: no change).
            yield return (AgUi.Event(AgUi.Custom, ("name", Superseded), ("value", new JsonObject { ["messageIds"] = new JsonArray([.. _supersededOrder.Select(id => (JsonNode)id)]) })), null);
        }

        yield return (AgUi.Event(AgUi.StateSnapshot, ("snapshot", _state?.DeepClone() ?? new JsonObject())), null);
        var presence = new JsonObject
        {
            ["members"] = new JsonArray(_presence.Values.Take(presenceCap).Select(m => (JsonNode)m.DeepClone()).ToArray()),
            ["total"] = _crowd ?? _presence.Count,
        };
        if (_crowd is not null)
        {
            // Crowded: the members are not in the log; GET /api/sessions/{id}/presence lists them.
            presence["counted"] = true;
        }

        yield return (AgUi.Event(AgUi.Custom, ("name", "presence.snapshot"), ("value", presence)), null);
        foreach (var (runId, threadId) in _activeRuns)
        {
            // Under its run id only if the gateway runs it, so a checkpoint restores which runs are its own.
            yield return (AgUi.Event(AgUi.RunStarted, ("threadId", threadId), ("runId", runId)), _ownRuns.ContainsKey(runId) ? runId : null);
            // An agent's steps so far, so a timeline shows them; their tool calls and results are in the messages.
            foreach (var step in _steps.GetValueOrDefault(runId) ?? [])
            {
                yield return (AgUi.Event(AgUi.StepStarted, ("stepName", step.Name)), runId);
                if (step.Finished)
                {
                    yield return (AgUi.Event(AgUi.StepFinished, ("stepName", step.Name)), runId);
                }
            }

            foreach (var open in _openMessages.Values.Where(m => m.RunId == runId))
            {
                yield return (AgUi.Event(AgUi.TextMessageStart, ("messageId", open.Id), ("role", open.Role)), runId);
                if (open.Text.Length > 0)
                {
                    yield return (AgUi.Event(AgUi.TextMessageContent, ("messageId", open.Id), ("delta", open.Text.ToString())), runId);
                }
            }

            foreach (var call in _openToolCalls.Values.Where(c => c.RunId == runId))
            {
                yield return (AgUi.Event(AgUi.ToolCallStart, ("toolCallId", call.Id), ("toolCallName", call.Name), ("parentMessageId", call.ParentMessageId)), runId);
                if (call.Arguments.Length > 0)
                {
                    yield return (AgUi.Event(AgUi.ToolCallArgs, ("toolCallId", call.Id), ("delta", call.Arguments.ToString())), runId);
                }
            }
        }

        // Text from publishers outside any run is in progress too.
        foreach (var open in _openMessages.Values.Where(m => m.RunId is null || !_activeRuns.ContainsKey(m.RunId)))
        {
            yield return (AgUi.Event(AgUi.TextMessageStart, ("messageId", open.Id), ("role", open.Role)), open.RunId);
            if (open.Text.Length > 0)
            {
                yield return (AgUi.Event(AgUi.TextMessageContent, ("messageId", open.Id), ("delta", open.Text.ToString())), open.RunId);
            }
        }
    }

    /// <summary>
    /// Drops the oldest completed messages past the count or character bound (the log's own bounds): the catch-up
    /// conversation of a long-lived session keeps its newest part, and memory stays bounded whatever is published.
    /// </summary>
    private void TrimMessages()
    {
        while (_messages.Count > 1 && (_messages.Count > maxMessages || _messageChars > maxTextChars))
        {
            var oldest = _messages[0];
            _messages.RemoveAt(0);
            if (Str(oldest, "id") is { } oldId)
            {
                _messagesById.Remove(oldId);
            }

            _messageChars = Math.Max(0, _messageChars - oldest.ToJsonString().Length);
        }
    }

    private JsonObject MessageFor(string id, string role)
    {
        if (!_messagesById.TryGetValue(id, out var message))
        {
            message = new JsonObject { ["id"] = id, ["role"] = role };
            _messagesById[id] = message;
            _messages.Add(message);
        }

        return message;
    }

    private static string? Str(JsonObject e, string name) =>
        e[name] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    /// <summary>
    /// The run a step belongs to: the run that wrote it, or for a step published from outside (an external agent) the
    /// one run in progress.
    /// </summary>
    private string? StepRun(string? runId) =>
        runId is not null ? (_activeRuns.ContainsKey(runId) ? runId : null) : _activeRuns.Count == 1 ? _activeRuns.Keys.First() : null;

    private sealed record RunStep(string Name)
    {
        public bool Finished { get; set; }
    }

    private sealed record OpenMessage(string Id, string Role, string? RunId)
    {
        public StringBuilder Text { get; } = new();
    }

    private sealed record OpenToolCall(string Id, string Name, string? ParentMessageId, string? RunId)
    {
        public StringBuilder Arguments { get; } = new();
    }
}
