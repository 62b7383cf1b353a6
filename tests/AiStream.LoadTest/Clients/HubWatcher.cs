using System.Text.Json;
using Microsoft.AspNetCore.SignalR.Client;

namespace AiStream.LoadTest.Clients;

/// <summary>
/// A SignalR watcher (official .NET client, WebSockets, negotiation skipped) that joins one session after a position,
/// with the run's bearer token when auth is on.
/// </summary>
internal sealed class HubWatcher : Watcher
{
    private readonly HubConnection _connection;
    private readonly string _sessionId;
    private readonly long _afterSeq;
    private bool _stopping;

    public HubWatcher(Uri hubUrl, string sessionId, long afterSeq, string group, int capacity, string? bearerToken)
        : base(group, capacity)
    {
        _sessionId = sessionId;
        _afterSeq = afterSeq;
        _connection = SessionHubClient.CreateConnection(hubUrl, bearerToken, webSocketsOnly: true);

        // Two cores shared with the gateway can delay pings under load; a generous timeout keeps that from ending a watch.
        _connection.ServerTimeout = TimeSpan.FromMinutes(2);
        _connection.HandshakeTimeout = TimeSpan.FromMinutes(1);
        _connection.On<string, JsonElement>("Event", (_, e) =>
        {
            if (e.TryGetProperty("type", out var type) && type.ValueEquals("TEXT_MESSAGE_CONTENT")
                && e.TryGetProperty("delta", out var delta) && e.TryGetProperty("seq", out var seq))
            {
                OnDelta(delta.GetString(), seq.GetInt64());
            }
        });
        _connection.On<string, string>("Dropped", (_, reason) => OnDisconnected("dropped: " + reason));
        _connection.Closed += e =>
        {
            if (!_stopping)
            {
                OnDisconnected("closed: " + (e?.Message ?? "no reason"));
            }

            return Task.CompletedTask;
        };
    }

    /// <summary>Connects and joins; returns once the join answered (delivery is registered by then).</summary>
    public override async Task ConnectAsync(CancellationToken cancellationToken)
    {
        await _connection.StartAsync(cancellationToken);
        await _connection.InvokeAsync<JsonElement>("Join", _sessionId, _afterSeq, cancellationToken);
    }

    public override async ValueTask DisposeAsync()
    {
        _stopping = true;
        await _connection.DisposeAsync();
    }
}
