using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace AiStream.Testing;

/// <summary>
/// A .NET SignalR client of <c>/hubs/sessions</c> (the official client), optionally as a given presence member,
/// recording every <c>Event(sessionId, event)</c> with the exact JSON text it received, and waiting helpers like
/// <see cref="SessionWatcher"/>'s. <see cref="CreateConnection"/> builds the bare connection for clients that handle
/// events themselves (the load tool's watchers).
/// </summary>
public sealed class SessionHubClient : IAsyncDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    private readonly List<(string SessionId, WatchedEvent Event)> _received = [];
    private int _read; // how far ReadUntilAsync has read

    private SessionHubClient(HubConnection connection) => Connection = connection;

    public HubConnection Connection { get; }

    /// <summary>Everything received so far, for any session, in order.</summary>
    public List<WatchedEvent> Received
    {
        get
        {
            lock (_received)
            {
                return _received.Select(r => r.Event).ToList();
            }
        }
    }

    /// <summary>Every event <see cref="ReadUntilAsync"/> has read so far, in order, with the session it was tagged with.</summary>
    public List<(string SessionId, WatchedEvent Event)> All
    {
        get
        {
            lock (_received)
            {
                return _received.Take(_read).ToList();
            }
        }
    }

    /// <summary>
    /// Reads on from where the last call stopped, up to and including the first non-presence event of
    /// <paramref name="sessionId"/> that matches <paramref name="stop"/>; returns that session's non-presence events read.
    /// </summary>
    public async Task<List<WatchedEvent>> ReadUntilAsync(string sessionId, Func<WatchedEvent, bool> stop, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        var events = new List<WatchedEvent>();
        while (true)
        {
            (string SessionId, WatchedEvent Event)? next = null;
            lock (_received)
            {
                if (_read < _received.Count)
                {
                    next = _received[_read++];
                }
            }

            if (next is not { } item)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"Timed out on the hub reading session {sessionId}; read:\n{string.Join("\n", events)}");
                }

                await Task.Delay(5);
                continue;
            }

            if (item.SessionId != sessionId || item.Event.IsPresence)
            {
                continue;
            }

            events.Add(item.Event);
            if (stop(item.Event))
            {
                return events;
            }
        }
    }

    /// <summary>Everything received for <paramref name="sessionId"/> so far, in order.</summary>
    public List<WatchedEvent> Events(string sessionId)
    {
        lock (_received)
        {
            return _received.Where(r => r.SessionId == sessionId).Select(r => r.Event).ToList();
        }
    }

    /// <summary><c>hubs/sessions?clientId=&amp;name=</c> on <paramref name="baseAddress"/>.</summary>
    public static Uri Url(Uri baseAddress, string? clientId = null, string? memberName = null)
    {
        var query = new List<string>();
        if (clientId is not null)
        {
            query.Add("clientId=" + Uri.EscapeDataString(clientId));
        }

        if (memberName is not null)
        {
            query.Add("name=" + Uri.EscapeDataString(memberName));
        }

        return new Uri(baseAddress, "hubs/sessions" + (query.Count > 0 ? "?" + string.Join('&', query) : ""));
    }

    /// <summary>
    /// A hub connection (not started) to <paramref name="hubUrl"/>. <paramref name="bearerToken"/> is sent as
    /// <c>Authorization: Bearer</c> (the .NET client does so on the WebSocket upgrade too; <c>?access_token=</c> is only for
    /// browsers). <paramref name="webSocketsOnly"/> skips negotiation; <paramref name="statefulReconnect"/> asks for
    /// stateful reconnects.
    /// </summary>
    public static HubConnection CreateConnection(Uri hubUrl, string? bearerToken = null, bool webSocketsOnly = false, bool statefulReconnect = false)
    {
        var builder = new HubConnectionBuilder().WithUrl(hubUrl, o =>
        {
            if (webSocketsOnly)
            {
                o.Transports = HttpTransportType.WebSockets;
                o.SkipNegotiation = true;
            }

            if (bearerToken is not null)
            {
                o.AccessTokenProvider = () => Task.FromResult<string?>(bearerToken);
            }
        });
        if (statefulReconnect)
        {
            builder.WithStatefulReconnect();
        }

        return builder.Build();
    }

    /// <summary>Connects to the hub of the gateway at <paramref name="baseAddress"/>, as member <paramref name="clientId"/> when given.</summary>
    public static async Task<SessionHubClient> ConnectAsync(Uri baseAddress, string? clientId = null, string? memberName = null, bool statefulReconnect = false)
    {
        var connection = CreateConnection(Url(baseAddress, clientId, memberName), statefulReconnect: statefulReconnect);
        var client = new SessionHubClient(connection);
        connection.On<string, JsonElement>("Event", (sessionId, e) =>
        {
            var json = e.GetRawText();
            var seq = JsonNode.Parse(json)!["seq"]!.GetValue<long>();
            lock (client._received)
            {
                client._received.Add((sessionId, new WatchedEvent(seq, json)));
            }
        });
        try
        {
            await connection.StartAsync();
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        return client;
    }

    /// <summary><c>Join(sessionId, afterSeq)</c>; returns the answer (<c>{sessionId, headSeq, snapshot}</c>).</summary>
    public async Task<JsonObject> JoinAsync(string sessionId, long? afterSeq = null)
    {
        var answer = await Connection.InvokeAsync<JsonElement>("Join", sessionId, afterSeq);
        return (JsonObject)JsonNode.Parse(answer.GetRawText())!;
    }

    /// <summary>Waits for the first event of any session, from the start, that matches.</summary>
    public Task<WatchedEvent> WaitForAsync(Func<WatchedEvent, bool> match, string what, TimeSpan? timeout = null) =>
        WaitForAsync(() => Received, match, what, timeout);

    /// <summary>Waits for the first event of <paramref name="sessionId"/>, from the start, that matches.</summary>
    public Task<WatchedEvent> WaitForAsync(string sessionId, Func<WatchedEvent, bool> match, string what, TimeSpan? timeout = null) =>
        WaitForAsync(() => Events(sessionId), match, what, timeout);

    public Task<WatchedEvent> WaitForRunEndAsync(string sessionId, string runId, TimeSpan? timeout = null) =>
        WaitForAsync(sessionId, e => e.IsRunEnd && e.RunId == runId, "the end of run " + runId, timeout);

    private static async Task<WatchedEvent> WaitForAsync(Func<List<WatchedEvent>> events, Func<WatchedEvent, bool> match, string what, TimeSpan? timeout)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            if (events().FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out on the hub waiting for {what}; received:\n{string.Join("\n", events())}");
            }

            await Task.Delay(10);
        }
    }

    public ValueTask DisposeAsync() => Connection.DisposeAsync();
}
