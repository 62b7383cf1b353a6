using System.Text.Json.Nodes;

namespace AiStream.Client;

/// <summary>One event of a session's log, in the AG-UI vocabulary, with its position.</summary>
/// <param name="Seq">The event's position in the session: strictly increasing, what a watch resumes from.</param>
/// <param name="Type">The AG-UI event type (<c>TEXT_MESSAGE_CONTENT</c>, <c>TOOL_CALL_ARGS</c>, …).</param>
/// <param name="Data">The whole event as JSON.</param>
public sealed record SessionEvent(long Seq, string Type, JsonObject Data)
{
    /// <summary>A string field of the event, or null.</summary>
    public string? Str(string name) => Data[name] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    /// <summary>For <c>CUSTOM</c> events, their name.</summary>
    public string? Name => Type == "CUSTOM" ? Str("name") : null;

    /// <summary>The first event of a catch-up: what came before it is summarised, not replayed.</summary>
    public bool IsSnapshot => Type == "MESSAGES_SNAPSHOT";
}

/// <summary>Where a watch stands, for a UI's connection badge.</summary>
public enum ConnectionStatus
{
    /// <summary>Opening the first connection.</summary>
    Connecting,

    /// <summary>Connected and receiving.</summary>
    Live,

    /// <summary>The connection dropped; trying again (see <see cref="ConnectionState.Attempt"/>).</summary>
    Reconnecting,

    /// <summary>The watch ended (cancelled, or refused for good).</summary>
    Offline,
}

/// <summary>A watch's connection state and, while reconnecting, the attempt number (from 1).</summary>
public readonly record struct ConnectionState(ConnectionStatus Status, int Attempt = 0, Exception? LastError = null);
