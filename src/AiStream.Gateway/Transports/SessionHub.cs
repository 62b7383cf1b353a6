using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using AiStream.Gateway.Api;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Security;
using AiStream.Gateway.Sessions;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Transports;

/// <summary>
/// <c>/hubs/sessions</c>: the session log over SignalR. One connection can join many sessions; each join gets the
/// same events, JSON and positions as the SSE watch, sent to the client method <c>Event(sessionId, event)</c>.
/// </summary>
internal sealed class SessionHub(HubSubscriptions subscriptions, ISessionStore store, RunManager runs, IPresenceStore presence, CallerLimits limits) : Hub
{
    /// <summary>Reads the member identity from the hub URL (<c>?clientId=&amp;name=</c>); a bad one refuses the connection.</summary>
    public override Task OnConnectedAsync()
    {
        var http = Context.GetHttpContext();
        var (identity, error) = http is null ? (null, "no HTTP context") : ClientIdentity.FromRequest(http);
        if (identity is null)
        {
            throw new HubException("Invalid identity: " + error);
        }

        subscriptions.Connect(Context.ConnectionId, identity);
        return base.OnConnectedAsync();
    }

    /// <summary>Updates the caller's presence state in a joined session (typing, viewing, prompting...).</summary>
    public async Task SetState(string sessionId, JsonElement state)
    {
        Check(sessionId, SessionRights.Read);
        if (state.ValueKind != JsonValueKind.Object)
        {
            throw new HubException("The state must be an object.");
        }

        if (ClientJson.FromElement(state) is not JsonObject body)
        {
            throw new HubException("The state must be a JSON object without repeated property names.");
        }

        var result = await presence.SetStateAsync(sessionId, Identity.Id, body);
        if (result != PresenceUpdate.Applied)
        {
            throw new HubException(result == PresenceUpdate.TooLarge ? "The state is too large." : "Join the session before setting a state.");
        }
    }

    private MemberIdentity Identity => subscriptions.IdentityOf(Context.ConnectionId);

    /// <summary>Joins a session: a replay after <paramref name="afterSeq"/> or a catch-up snapshot, then the live tail.</summary>
    public async Task<JoinResult> Join(string sessionId, long? afterSeq)
    {
        Check(sessionId, SessionRights.Read);
        return await subscriptions.JoinAsync(Context.ConnectionId, Identity, sessionId, afterSeq, Context.ConnectionAborted);
    }

    public Task Leave(string sessionId) => sessionId is null ? Task.CompletedTask : subscriptions.LeaveAsync(Context.ConnectionId, sessionId);

    /// <summary>Starts a run (same body as <c>POST /api/sessions/{id}/runs</c>) and returns its id.</summary>
    public async Task<string> StartRun(string sessionId, JsonElement request)
    {
        Check(sessionId, SessionRights.Write);
        if (Context.GetHttpContext() is { } http && await limits.TryStartRunAsync(http, Context.ConnectionAborted) is { } retry)
        {
            throw new HubException($"Too many runs started (AiStream:Limits:RunsPerMinute); retry in {Math.Ceiling(retry.TotalSeconds)} s.");
        }

        if (request.ValueKind != JsonValueKind.Object)
        {
            throw new HubException("The run request must be an object.");
        }

        if (ClientJson.FromElement(request) is not JsonObject body)
        {
            throw new HubException("The run request must be a JSON object without repeated property names.");
        }

        var (parsed, bodyError) = SessionsEndpoints.RunBody(body);
        if (bodyError is not null)
        {
            throw new HubException(bodyError.Message);
        }

        var (runId, error) = await runs.StartAsync(sessionId,
            parsed! with
            {
                Owner = Caller.Subject,
                Caller = Caller,
                FallbackBudgetKey = "ip:" + Context.GetHttpContext()?.Connection.RemoteIpAddress,
            },
            Context.ConnectionAborted);
        return error is null ? runId! : throw new HubException(error.Message);
    }

    /// <summary>Cancels a run; returns its outcome.</summary>
    public async Task<string> CancelRun(string sessionId, string runId)
    {
        Check(sessionId, SessionRights.Write);
        if (string.IsNullOrEmpty(runId) || runId.Length > 256)
        {
            throw new HubException("A run id is 1 to 256 characters.");
        }

        if (await SessionsEndpoints.CancelDenialAsync(Caller, sessionId, runId, runs) is { } denial)
        {
            throw new HubException("Forbidden: " + denial.Message);
        }

        return await runs.CancelAsync(sessionId, runId, "requested") ?? throw new HubException($"No active run '{runId}' in session '{sessionId}'.");
    }

    /// <summary>Publishes one AG-UI event; returns its position.</summary>
    public async Task<long> Publish(string sessionId, JsonElement @event)
    {
        Check(sessionId, SessionRights.Write);
        if (EventValidator.Validate(ClientJson.FromElement(@event), sessionId, out var body) is { } error)
        {
            throw new HubException($"Invalid event: {error}.");
        }

        if (body!["type"]?.GetValue<string>() is AgUi.MessagesSnapshot or AgUi.StateSnapshot)
        {
            Check(sessionId, SessionRights.Admin);
        }

        var result = await store.AppendAsync(sessionId, [body!], null, null, Context.ConnectionAborted);
        return result.Seqs[0];
    }

    public override async Task OnDisconnectedAsync(Exception? exception)
    {
        await subscriptions.LeaveAllAsync(Context.ConnectionId);
        await base.OnDisconnectedAsync(exception);
    }

    /// <summary>The caller's grants, read from the connection's credential when it connected.</summary>
    private CallerGrants Caller => Context.GetHttpContext() is { } http ? CallerGrants.Of(http) : CallerGrants.From(Context.User!);

    /// <summary>Checks the session id and that the caller holds <paramref name="needed"/> on it.</summary>
    private void Check(string sessionId, SessionRights needed)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } error)
        {
            throw new HubException(error.Message);
        }

        if (!Caller.Has(sessionId, needed))
        {
            throw new HubException("Forbidden: " + SessionAccess.Describe(needed));
        }
    }
}

/// <summary>What <c>Join</c> answers.</summary>
internal sealed record JoinResult(
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("headSeq")] long HeadSeq,
    [property: JsonPropertyName("snapshot")] bool Snapshot);

/// <summary>An event's already-serialised JSON, written into SignalR messages as it is.</summary>
[JsonConverter(typeof(RawEventConverter))]
internal sealed class RawEvent(byte[] json)
{
    public byte[] Json { get; } = json;
}

/// <summary>Writes <see cref="RawEvent"/> bytes verbatim; the event was serialised once, at append.</summary>
internal sealed class RawEventConverter : JsonConverter<RawEvent>
{
    public override RawEvent Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        new(JsonDocument.ParseValue(ref reader).RootElement.GetRawText() is var text ? System.Text.Encoding.UTF8.GetBytes(text) : []);

    public override void Write(Utf8JsonWriter writer, RawEvent value, JsonSerializerOptions options) =>
        writer.WriteRawValue(value.Json, skipInputValidation: true);
}

/// <summary>
/// Each (connection, session) join has its own bounded subscriber and a pump that sends its events in order.
/// A slow connection only ever slows its own pump. The per-connection state (identity and joins) is one small object
/// in one dictionary, not SignalR's per-connection Items dictionary and a concurrent dictionary per connection (about
/// 1 KB of every idle hub connection).
/// </summary>
internal sealed class HubSubscriptions(
    ISessionStore store, IPresenceStore presence, IHubContext<SessionHub> hub, IOptions<SessionsOptions> options, WatchTicker ticker,
    ILogger<SessionSubscriberLog> logger)
{
    private readonly ConcurrentDictionary<string, HubConnection> _connections = new(StringComparer.Ordinal);

    /// <summary>Registers a connection and its member identity (from <c>OnConnectedAsync</c>).</summary>
    public void Connect(string connectionId, MemberIdentity identity) => _connections[connectionId] = new HubConnection(identity);

    /// <summary>The identity a connection connected with.</summary>
    public MemberIdentity IdentityOf(string connectionId) =>
        _connections.TryGetValue(connectionId, out var connection) ? connection.Identity : throw new HubException("The connection is closing.");

    public async Task<JoinResult> JoinAsync(string connectionId, MemberIdentity identity, string sessionId, long? afterSeq, CancellationToken connectionAborted)
    {
        await LeaveAsync(connectionId, sessionId, rejoining: true);
        var subscriber = new Subscriber(options.Value.CoalesceThreshold, options.Value.SubscriberHardLimit);
        var first = await store.SubscribeAsync(sessionId, afterSeq, subscriber, connectionAborted);
        SessionSubscriberLog.Joined(logger, sessionId, afterSeq ?? -1, first.HeadSeq, first.IsSnapshot);
        var pump = new Pump(subscriber, identity);
        if (!_connections.TryGetValue(connectionId, out var connection) || !connection.TryAdd(sessionId, pump))
        {
            // The connection closed while the join was subscribing.
            store.Unsubscribe(sessionId, subscriber);
            throw new HubException("The connection is closing.");
        }

        // Joining makes the member present; SignalR's own keep-alive ends a dead connection, which ends the join.
        try
        {
            await presence.ConnectAsync(sessionId, identity, connectionId);
        }
        catch
        {
            // Refused (the session is full) or Redis away: the join fails and leaves no subscriber behind.
            if (connection.TryRemove(sessionId, pump) is not null)
            {
                store.Unsubscribe(sessionId, subscriber);
            }

            throw;
        }

        var renewal = ticker.Add(null, sessionId, identity.Id, connectionId);
        lock (pump)
        {
            // A leave that came while the join was connecting has already stopped the pump: renew nothing.
            if (pump.Stopped)
            {
                ticker.Remove(renewal);
            }
            else
            {
                pump.Renewal = renewal;
            }
        }

        pump.Task = Task.Run(() => PumpAsync(connectionId, sessionId, pump, first.Events), CancellationToken.None);
        return new JoinResult(sessionId, first.HeadSeq, first.IsSnapshot);
    }

    public async Task LeaveAsync(string connectionId, string sessionId, bool rejoining = false)
    {
        if (_connections.TryGetValue(connectionId, out var connection) && connection.TryRemove(sessionId, null) is { } pump)
        {
            await StopAsync(connectionId, sessionId, pump, presenceToo: !rejoining);
        }
    }

    public async Task LeaveAllAsync(string connectionId)
    {
        if (_connections.TryRemove(connectionId, out var connection))
        {
            foreach (var (sessionId, pump) in connection.Close())
            {
                await StopAsync(connectionId, sessionId, pump, presenceToo: true);
            }
        }
    }

    private async Task StopAsync(string connectionId, string sessionId, Pump pump, bool presenceToo)
    {
        store.Unsubscribe(sessionId, pump.Subscriber);
        WatchTicker.Entry? renewal;
        lock (pump)
        {
            pump.Stopped = true;
            renewal = pump.Renewal;
            pump.Renewal = null;
        }

        if (renewal is not null)
        {
            ticker.Remove(renewal);
        }

        if (presenceToo)
        {
            await presence.DisconnectAsync(sessionId, pump.Identity.Id, connectionId);
        }
    }

    private async Task PumpAsync(string connectionId, string sessionId, Pump pump, IReadOnlyList<SessionEvent> first)
    {
        var client = hub.Clients.Client(connectionId);
        try
        {
            foreach (var e in first)
            {
                await client.SendAsync("Event", sessionId, new RawEvent(e.Json));
            }

            first = []; // sent: the pump lives as long as the join and must not hold the catch-up events
            var batch = new List<SessionEvent>(); // grows to the largest drain; an idle watcher holds none
            while (true)
            {
                // Subscriber.TryDrain and WaitAsync rather than DrainAsync: waiting then allocates nothing per event.
                var drained = pump.Subscriber.TryDrain(batch);
                while (drained is null)
                {
                    await pump.Subscriber.WaitAsync();
                    drained = pump.Subscriber.TryDrain(batch);
                }

                if (!drained.Value.Open)
                {
                    break;
                }

                foreach (var e in batch)
                {
                    await client.SendAsync("Event", sessionId, new RawEvent(e.Json));
                }

                batch.Clear();
            }

            if (pump.Subscriber.CloseReason is { } reason)
            {
                SessionSubscriberLog.Dropped(logger, sessionId, reason);
                await client.SendAsync("Dropped", sessionId, reason);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
        {
            // The connection went away; OnDisconnectedAsync cleans up.
        }
        finally
        {
            if (_connections.TryGetValue(connectionId, out var connection) && connection.TryRemove(sessionId, pump) is not null)
            {
                await StopAsync(connectionId, sessionId, pump, presenceToo: true);
            }
        }
    }

    /// <summary>
    /// A hub connection: who it is and the sessions it joined, under its own lock. The first join is kept in two
    /// fields and only further ones in a dictionary: most connections join one session, and at 10,000 idle connections
    /// the dictionary was 1.7 MB.
    /// </summary>
    private sealed class HubConnection(MemberIdentity identity)
    {
        private readonly Lock _lock = new();
        private string? _firstSession;
        private Pump? _firstPump;
        private Dictionary<string, Pump>? _more;
        private bool _closed;

        public MemberIdentity Identity { get; } = identity;

        public bool TryAdd(string sessionId, Pump pump)
        {
            lock (_lock)
            {
                if (_closed)
                {
                    return false;
                }

                if ((_firstSession is null && _more?.ContainsKey(sessionId) != true) || _firstSession == sessionId)
                {
                    (_firstSession, _firstPump) = (sessionId, pump);
                }
                else
                {
                    (_more ??= new(1, StringComparer.Ordinal))[sessionId] = pump;
                }

                return true;
            }
        }

        /// <summary>Removes the session's join (only if it is <paramref name="expected"/>, when given) and returns it.</summary>
        public Pump? TryRemove(string sessionId, Pump? expected)
        {
            lock (_lock)
            {
                if (_firstSession == sessionId)
                {
                    var first = _firstPump!;
                    if (expected is not null && first != expected)
                    {
                        return null;
                    }

                    (_firstSession, _firstPump) = (null, null);
                    return first;
                }

                if (_more is null || !_more.TryGetValue(sessionId, out var pump) || (expected is not null && pump != expected))
                {
                    return null;
                }

                _more.Remove(sessionId);
                return pump;
            }
        }

        /// <summary>Refuses further joins and hands back the current ones.</summary>
        public List<KeyValuePair<string, Pump>> Close()
        {
            lock (_lock)
            {
                _closed = true;
                var joins = _more is null ? [] : _more.ToList();
                if (_firstSession is not null)
                {
                    joins.Insert(0, new(_firstSession, _firstPump!));
                }

                (_firstSession, _firstPump, _more) = (null, null, null);
                return joins;
            }
        }
    }

    private sealed class Pump(Subscriber subscriber, MemberIdentity identity)
    {
        public Subscriber Subscriber { get; } = subscriber;
        public MemberIdentity Identity { get; } = identity;
        public Task? Task { get; set; }
        public WatchTicker.Entry? Renewal { get; set; }
        public bool Stopped { get; set; }
    }
}
