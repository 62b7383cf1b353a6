using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>What a subscriber gets first: a replay of the log after its position, or a catch-up snapshot.</summary>
/// <param name="Events">Events to deliver before the live tail, in order.</param>
/// <param name="HeadSeq">The log head when the subscriber was registered; live events follow it.</param>
/// <param name="IsSnapshot">True when <paramref name="Events"/> is a synthesized catch-up rather than a replay.</param>
internal sealed record SubscribeResult(IReadOnlyList<SessionEvent> Events, long HeadSeq, bool IsSnapshot)
{
    /// <summary>
    /// For a subscriber that follows the active run (<see cref="Subscriber.FollowsActiveRun"/>): the run it follows, or
    /// null when the session has no run in progress (the subscriber was then not registered).
    /// </summary>
    public string? Run { get; init; }
}

/// <summary>The outcome of an append.</summary>
/// <param name="Events">The appended events with their positions.</param>
/// <param name="Replayed">True when an <c>Idempotency-Key</c> matched an earlier append and nothing was appended.</param>
internal sealed record AppendResult(IReadOnlyList<SessionEvent> Events, bool Replayed, IReadOnlyList<long> Seqs);

/// <summary>
/// The session event logs and their live fan-out. Appends to one session are totally ordered; a subscriber registered
/// with a position sees every later event exactly once, in order, with no gap between its replay and the live tail.
/// In-memory here; a Redis implementation makes positions global across nodes.
/// </summary>
internal interface ISessionStore
{
    /// <summary>Appends events in order and fans them out to the session's subscribers.</summary>
    /// <param name="buffered">
    /// True for events the gateway produces itself (runs, presence): when a shared store is unreachable they are
    /// delivered to local watchers and written when it is back. False for a client's publish, which then fails with
    /// <see cref="SessionStoreUnavailableException"/> so the client can retry.
    /// </param>
    ValueTask<AppendResult> AppendAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey, CancellationToken cancellationToken, bool buffered = false);

    /// <summary>Keeps a session's local state (its mirror of a shared log) while a run writes to it.</summary>
    IDisposable Retain(string sessionId);

    /// <summary>
    /// Registers <paramref name="subscriber"/> and returns what it must see first: the events after
    /// <paramref name="afterSeq"/> when the log still has them (and they are few enough), else a catch-up snapshot.
    /// A subscriber that <see cref="Subscriber.FollowsActiveRun"/> gets the newest active run's events from its start
    /// instead (see <see cref="SubscribeResult.Run"/>).
    /// </summary>
    ValueTask<SubscribeResult> SubscribeAsync(string sessionId, long? afterSeq, Subscriber subscriber, CancellationToken cancellationToken);

    void Unsubscribe(string sessionId, Subscriber subscriber);

    /// <summary>Live watchers of a session, on any transport.</summary>
    int Watchers(string sessionId);

    /// <summary>The conversation so far, in AG-UI message shape.</summary>
    ValueTask<IReadOnlyList<JsonObject>> MessagesAsync(string sessionId, CancellationToken cancellationToken);

    /// <summary>Whether a message id is already in the conversation.</summary>
    ValueTask<bool> HasMessageAsync(string sessionId, string messageId, CancellationToken cancellationToken);

    /// <summary>The session's shared state as the log has it now.</summary>
    ValueTask<JsonNode?> StateAsync(string sessionId, CancellationToken cancellationToken);

    ValueTask<SessionInfo> InfoAsync(string sessionId, CancellationToken cancellationToken);
}

/// <summary>The shared store could not take a write that must not be buffered (a client's publish); the client should retry.</summary>
internal sealed class SessionStoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The run's events may no longer be written: another node declared the run lost (its node stopped answering) and
/// ended it. The run must stop without writing anything more.
/// </summary>
internal sealed class RunFencedException(string message) : Exception(message);
