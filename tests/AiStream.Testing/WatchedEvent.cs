using System.Text.Json.Nodes;

namespace AiStream.Testing;

/// <summary>
/// One session event as a watcher (SSE or hub) received it: its position (the SSE <c>id:</c> line, or the hub event's <c>seq</c>) and
/// its exact JSON text, with the fields tests look at.
/// </summary>
public sealed record WatchedEvent(long Id, string Json)
{
    public JsonObject Data { get; } = (JsonObject)JsonNode.Parse(Json)!;

    public string Type => Data["type"]!.GetValue<string>();

    public long Seq => Data["seq"]!.GetValue<long>();

    /// <summary>A string field, else null (absent or not a string).</summary>
    public string? Str(string name) => Data[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>The CUSTOM event's name, else null.</summary>
    public string? Name => Type == "CUSTOM" ? Str("name") : null;

    /// <summary>The CUSTOM event's value as an object, else null.</summary>
    public JsonObject? Value => Data["value"] as JsonObject;

    public string? RunId => Str("runId");

    public string? MessageId => Str("messageId");

    /// <summary>
    /// Any <c>CUSTOM presence.*</c> event (the snapshot's <c>presence.snapshot</c> included): presence shares the log with
    /// everything else, and most session tests look past it.
    /// </summary>
    public bool IsPresence => Name is { } name && name.StartsWith("presence.", StringComparison.Ordinal);

    /// <summary>A <c>CUSTOM presence.join/leave/update</c> (not the snapshot's <c>presence.snapshot</c>).</summary>
    public bool IsPresenceChange => Name is "presence.join" or "presence.leave" or "presence.update";

    /// <summary>The member id of a presence.join/leave/update, else null.</summary>
    public string? MemberId => IsPresenceChange ? Value?["id"]?.GetValue<string>() : null;

    /// <summary>True for the presence event <paramref name="name"/> of member <paramref name="memberId"/>.</summary>
    public bool Is(string name, string memberId) => Name == name && MemberId == memberId;

    /// <summary>The notice a node writes when it could not fill a gap in its copy of the log (a snapshot follows).</summary>
    public bool IsGap => Name == "stream.gap";

    public bool IsRunEnd => Type is "RUN_FINISHED" or "RUN_ERROR";

    /// <summary>RUN_FINISHED's outcome type (an AG-UI 1.0 object, or a plain string).</summary>
    public string? OutcomeType => Data["outcome"] is JsonObject o ? o["type"]?.GetValue<string>() : Str("outcome");

    /// <summary>Why a run was cancelled, beside its outcome.</summary>
    public string? OutcomeReason => (Data["outcome"] as JsonObject)?["reason"]?.GetValue<string>() ?? Str("reason");

    public override string ToString() => $"{Id} {Json}";
}
