using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Sessions;

/// <summary>The embedded session store: one ordered, bounded log per session, in this process.</summary>
internal sealed partial class InMemorySessionStore : ISessionStore, IDisposable
{
    private readonly ConcurrentDictionary<string, SessionLog> _sessions = new(StringComparer.Ordinal);
    private readonly SessionsOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<InMemorySessionStore> _logger;
    private readonly ITimer _sweeper;

    private readonly int _presenceCap;

    public InMemorySessionStore(IOptions<SessionsOptions> options, TimeProvider time, ILogger<InMemorySessionStore> logger)
    {
        _options = options.Value;
        _presenceCap = options.Value.PresenceSnapshotCap;
        _time = time;
        _logger = logger;
        _sweeper = time.CreateTimer(_ => Sweep(), null, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1));
    }

    public ValueTask<AppendResult> AppendAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey, CancellationToken cancellationToken, bool buffered = false) =>
        ValueTask.FromResult(Log(sessionId).Append(events, runId, idempotencyKey));

    // A session with a run is never idle (its run is active in the projection), so there is nothing to hold here.
    public IDisposable Retain(string sessionId) => NoopDisposable.Instance;

    public ValueTask<SubscribeResult> SubscribeAsync(string sessionId, long? afterSeq, Subscriber subscriber, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Log(sessionId).Subscribe(afterSeq, subscriber));

    public void Unsubscribe(string sessionId, Subscriber subscriber)
    {
        if (_sessions.TryGetValue(sessionId, out var log))
        {
            log.Unsubscribe(subscriber);
        }
    }

    /// <summary>Sessions held in memory now.</summary>
    internal int SessionCount => _sessions.Count;

    public int Watchers(string sessionId) => _sessions.TryGetValue(sessionId, out var log) ? log.Watchers : 0;

    // Reads never create a session: only writing to it or watching it does, so a stream of lookups of made-up ids
    // costs no memory.
    public ValueTask<IReadOnlyList<JsonObject>> MessagesAsync(string sessionId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_sessions.TryGetValue(sessionId, out var log) ? log.Messages() : (IReadOnlyList<JsonObject>)[]);

    public ValueTask<bool> HasMessageAsync(string sessionId, string messageId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_sessions.TryGetValue(sessionId, out var log) && log.HasMessage(messageId));

    public ValueTask<JsonNode?> StateAsync(string sessionId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_sessions.TryGetValue(sessionId, out var log) ? log.State() : new JsonObject());

    public ValueTask<SessionInfo> InfoAsync(string sessionId, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_sessions.TryGetValue(sessionId, out var log) ? log.Info(sessionId) : new SessionInfo(sessionId, 0, 1, 0, []));

    private SessionLog Log(string sessionId)
    {
        if (_sessions.TryGetValue(sessionId, out var log))
        {
            return log;
        }

        // A bound on what any stream of new ids can make this node hold; a racing few may pass it, never many.
        if (_sessions.Count >= _options.MaxSessions)
        {
            throw new SessionLimitExceededException($"This node holds its maximum of {_options.MaxSessions} sessions (AiStream:Sessions:MaxSessions); try again later.");
        }

        return _sessions.GetOrAdd(sessionId, static (_, self) => new SessionLog(self._options, self._time, self._presenceCap), this);
    }

    private void Sweep()
    {
        var idle = TimeSpan.FromMinutes(_options.SessionIdleMinutes);
        foreach (var (id, log) in _sessions)
        {
            if (log.IsIdle(idle) && _sessions.TryRemove(new KeyValuePair<string, SessionLog>(id, log)))
            {
                Log_SessionForgotten(_logger, id);
            }
        }
    }

    public void Dispose() => _sweeper.Dispose();

    [LoggerMessage(EventId = 4001, Level = LogLevel.Debug, Message = "Session {SessionId} was idle and is forgotten")]
    private static partial void Log_SessionForgotten(ILogger logger, string sessionId);
}

internal sealed class NoopDisposable : IDisposable
{
    public static readonly NoopDisposable Instance = new();

    public void Dispose()
    {
    }
}
