using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// Told about events once they are in a session's log, on the node that appended them (webhooks listen here). It
/// must not block: the append waits for it.
/// </summary>
internal interface ISessionEventSink
{
    /// <summary>Whether it wants appends at all (a gateway with no webhook subscription does not).</summary>
    bool Listening { get; }

    void Appended(string sessionId, IReadOnlyList<(long Seq, JsonObject Body)> events);
}

/// <summary>
/// The session store as the features see it when something listens to appends: every append that stored events is
/// passed on to the sinks with the positions it got. While no sink listens, an append goes straight to the store.
/// </summary>
internal sealed class ObservedSessionStore(ISessionStore inner, IEnumerable<ISessionEventSink> sinks) : ISessionStore
{
    private readonly ISessionEventSink[] _sinks = [.. sinks];

    public ValueTask<AppendResult> AppendAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey,
        CancellationToken cancellationToken, bool buffered = false) =>
        _sinks.Any(s => s.Listening)
            ? ObserveAsync(sessionId, events, runId, idempotencyKey, buffered, cancellationToken)
            : inner.AppendAsync(sessionId, events, runId, idempotencyKey, cancellationToken, buffered);

    private async ValueTask<AppendResult> ObserveAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey,
        bool buffered, CancellationToken cancellationToken)
    {
        var result = await inner.AppendAsync(sessionId, events, runId, idempotencyKey, cancellationToken, buffered).ConfigureAwait(false);
        if (!result.Replayed && result.Seqs.Count == events.Count && events.Count > 0)
        {
            var appended = new (long, JsonObject)[events.Count];
            for (var i = 0; i < events.Count; i++)
            {
                appended[i] = (result.Seqs[i], events[i]);
            }

            foreach (var sink in _sinks)
            {
                sink.Appended(sessionId, appended);
            }
        }

        return result;
    }

    public IDisposable Retain(string sessionId) => inner.Retain(sessionId);

    public ValueTask<SubscribeResult> SubscribeAsync(string sessionId, long? afterSeq, Subscriber subscriber, CancellationToken cancellationToken) =>
        inner.SubscribeAsync(sessionId, afterSeq, subscriber, cancellationToken);

    public void Unsubscribe(string sessionId, Subscriber subscriber) => inner.Unsubscribe(sessionId, subscriber);

    public int Watchers(string sessionId) => inner.Watchers(sessionId);

    public ValueTask<IReadOnlyList<JsonObject>> MessagesAsync(string sessionId, CancellationToken cancellationToken) => inner.MessagesAsync(sessionId, cancellationToken);

    public ValueTask<bool> HasMessageAsync(string sessionId, string messageId, CancellationToken cancellationToken) =>
        inner.HasMessageAsync(sessionId, messageId, cancellationToken);

    public ValueTask<JsonNode?> StateAsync(string sessionId, CancellationToken cancellationToken) => inner.StateAsync(sessionId, cancellationToken);

    public ValueTask<SessionInfo> InfoAsync(string sessionId, CancellationToken cancellationToken) => inner.InfoAsync(sessionId, cancellationToken);
}
