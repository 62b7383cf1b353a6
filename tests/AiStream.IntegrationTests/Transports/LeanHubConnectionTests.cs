using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace AiStream.IntegrationTests.Transports;

/// <summary>
/// The lean hub path (AiStream:Transports:LeanHubConnections) on a real Kestrel: a WebSocket upgrade of
/// <c>/hubs/sessions</c> without negotiation is answered at the connection level and runs SignalR's own hub handler,
/// with the official .NET client and with the runtime's WebSocket speaking the hub protocol by hand; negotiated
/// connections and everything else still reach SignalR's HTTP transports.
/// </summary>
public sealed class LeanHubConnectionTests : IAsyncLifetime
{
    private const char RecordSeparator = '\u001e';
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private GatewayProcess _gateway = null!;

    public async Task InitializeAsync() => _gateway = await StartGatewayAsync(lean: true);

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    [Fact]
    public async Task UpgradeWithoutNegotiation_IsAnsweredLean_AndSpeaksTheHubProtocolLikeSignalR()
    {
        await using var off = await StartGatewayAsync(lean: false);
        var results = new List<(string Head, List<string> Messages)>();
        foreach (var gateway in new[] { _gateway, off })
        {
            var session = NewSession();
            await PublishAsync(gateway, session, "before", 0);
            using var raw = await RawConnection.OpenAsync(gateway.Port);
            // The sample handshake of RFC 6455 (1.3): its answer is known.
            await raw.SendAsync("GET /hubs/sessions?clientId=raw HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
            var head = await raw.ReadHeadAsync();
            using var socket = WebSocket.CreateFromStream(raw.Body, new WebSocketCreationOptions { IsServer = false });
            await SendAsync(socket, "{\"protocol\":\"json\",\"version\":1}");
            var records = Records(await ReceiveAsync(socket));
            await SendAsync(socket, "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Join\",\"arguments\":[\"" + session + "\",1]}");
            // The join's result and the events after position 1 (the member's own presence join first), as invocations
            // of Event(sessionId, event); the result and the first event may come in either order.
            while (records.Count < 3)
            {
                records.AddRange(Records(await ReceiveAsync(socket)));
            }

            await PublishAsync(gateway, session, "after", 1);
            while (!records[^1].Contains("\"name\":\"after\"", StringComparison.Ordinal))
            {
                records.AddRange(Records(await ReceiveAsync(socket)));
            }

            await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
            results.Add((head, records.Select(m => m.Replace(session, "S", StringComparison.Ordinal)).ToList()));
        }

        var (leanHead, leanMessages) = results[0];
        var (kestrelHead, kestrelMessages) = results[1];
        Assert.StartsWith("HTTP/1.1 101 Switching Protocols\r\n", leanHead, StringComparison.Ordinal);
        Assert.Contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", leanHead, StringComparison.Ordinal);
        Assert.Contains("\r\nUpgrade: websocket\r\n", leanHead, StringComparison.Ordinal);
        // Kestrel's HTTP layer names itself; the lean path does not.
        Assert.DoesNotContain("Server: Kestrel", leanHead, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 101 Switching Protocols\r\n", kestrelHead, StringComparison.Ordinal);
        Assert.Contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", kestrelHead, StringComparison.Ordinal);
        Assert.Contains("\r\nServer: Kestrel\r\n", kestrelHead, StringComparison.Ordinal);

        // The same conversation: handshake answer, the join's result, then the same events (times aside).
        static List<string> Comparable(List<string> records) => records.Take(1)
            .Concat(records.Skip(1).Select(r => System.Text.RegularExpressions.Regex.Replace(r, "\"timestamp\":[0-9]+", "\"timestamp\":0")).Order(StringComparer.Ordinal))
            .ToList();
        Assert.Equal(Comparable(kestrelMessages), Comparable(leanMessages));
        Assert.Equal("{}", leanMessages[0]);
        Assert.Contains("{\"type\":3,\"invocationId\":\"1\",\"result\":{\"sessionId\":\"S\",\"headSeq\":1,\"snapshot\":false}}", leanMessages);
        Assert.StartsWith("{\"type\":1,\"target\":\"Event\",\"arguments\":[\"S\",{", leanMessages[^1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task DotNetClientSkippingNegotiation_GetsTheSameEventsAsANegotiatedOne_InBothDirections()
    {
        var session = NewSession();
        await using var lean = await HubClient.ConnectAsync(_gateway.BaseAddress, "lean", skipNegotiation: true);
        await using var negotiated = await HubClient.ConnectAsync(_gateway.BaseAddress, "negotiated", skipNegotiation: false);
        await lean.Connection.InvokeAsync<JsonElement>("Join", session, 0L);
        await negotiated.Connection.InvokeAsync<JsonElement>("Join", session, 0L);

        // Larger than one read of the socket or one buffer of the writer, in both directions.
        var big = new string('x', 20_000);
        var seqs = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            var e = new JsonObject { ["type"] = "CUSTOM", ["name"] = "e" + i, ["value"] = i % 2 == 0 ? big : i };
            seqs.Add(await lean.Connection.InvokeAsync<long>("Publish", session, e));
        }

        await PublishAsync(_gateway, session, "http", big);
        var viaLean = await lean.ReadUntilAsync(e => e.Contains("\"name\":\"http\"", StringComparison.Ordinal));
        var viaNegotiated = await negotiated.ReadUntilAsync(e => e.Contains("\"name\":\"http\"", StringComparison.Ordinal));
        Assert.Equal(viaNegotiated, viaLean);
        var customs = viaLean.Where(e => e.Contains("\"type\":\"CUSTOM\"", StringComparison.Ordinal)).ToList();
        Assert.Equal(6, customs.Count);
        for (var i = 0; i < 5; i++)
        {
            Assert.Contains($"\"name\":\"e{i}\"", customs[i], StringComparison.Ordinal);
            Assert.Contains($"\"seq\":{seqs[i]}", customs[i], StringComparison.Ordinal);
        }

        Assert.Contains(big, customs[0], StringComparison.Ordinal);
        Assert.Contains(big, customs[5], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("negotiated connection", "GET /hubs/sessions?id=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("subprotocol", "GET /hubs/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n")]
    [InlineData("bad key", "GET /hubs/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("old version", "GET /hubs/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")]
    [InlineData("no upgrade", "GET /hubs/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")]
    [InlineData("invalid identity", "GET /hubs/sessions?clientId=a%20b HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("negotiate", "POST /hubs/sessions/negotiate?negotiateVersion=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")]
    public async Task HubRequestsTheLeanPathDoesNotTake_AreLeftToSignalR(string what, string request)
    {
        using var raw = await RawConnection.OpenAsync(_gateway.Port);
        await raw.SendAsync(request);
        var head = await raw.ReadHeadAsync();
        Assert.True(head.Contains("\r\nServer: Kestrel\r\n", StringComparison.Ordinal), what + ": not answered by Kestrel's HTTP layer: " + head);
    }

    [Fact]
    public async Task InvalidIdentity_WithoutNegotiation_IsRefusedAsBefore()
    {
        await using var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(_gateway.BaseAddress, "hubs/sessions?clientId=a%20b"), o =>
            {
                o.SkipNegotiation = true;
                o.Transports = HttpTransportType.WebSockets;
            })
            .Build();
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.Closed += _ =>
        {
            closed.TrySetResult();
            return Task.CompletedTask;
        };

        // As on SignalR's own transport: the handshake may finish before OnConnectedAsync refuses the identity.
        try
        {
            await connection.StartAsync();
            await closed.Task.WaitAsync(Patience);
        }
        catch (Exception ex) when (ex is not TimeoutException)
        {
            // Refused during the start.
        }

        Assert.Equal(HubConnectionState.Disconnected, connection.State);
    }

    [Fact]
    public async Task ClosingOrDroppingALeanHubConnection_EndsItsPresence()
    {
        var session = NewSession();
        using var observer = await Observer.WatchAsync(_gateway, session);
        var reader = observer.Reader;

        // A client that closes the connection properly.
        var leaver = await HubClient.ConnectAsync(_gateway.BaseAddress, "leaver", skipNegotiation: true);
        await leaver.Connection.InvokeAsync<JsonElement>("Join", session, (long?)null);
        Assert.Contains("presence.join", await ReadUntilAsync(reader, "\"id\":\"leaver\""), StringComparison.Ordinal);
        await leaver.DisposeAsync();
        Assert.Contains("presence.leave", await ReadUntilAsync(reader, "\"id\":\"leaver\""), StringComparison.Ordinal);

        // A client whose TCP connection just ends, without a WebSocket close.
        var raw = await RawConnection.OpenAsync(_gateway.Port);
        await JoinOverRawWebSocketAsync(raw, "dropper", session, "keep-alive, Upgrade");
        Assert.Contains("presence.join", await ReadUntilAsync(reader, "\"id\":\"dropper\""), StringComparison.Ordinal);
        raw.Dispose();
        Assert.Contains("presence.leave", await ReadUntilAsync(reader, "\"id\":\"dropper\""), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientThatStopsReading_IsDisconnectedAfterTheSendTimeout_AndLeaves()
    {
        var session = NewSession();
        using var observer = await Observer.WatchAsync(_gateway, session);
        var reader = observer.Reader;

        using var raw = await RawConnection.OpenAsync(_gateway.Port, receiveBufferSize: 4096);
        await JoinOverRawWebSocketAsync(raw, "stuck", session, "Upgrade");
        Assert.Contains("presence.join", await ReadUntilAsync(reader, "\"id\":\"stuck\""), StringComparison.Ordinal);

        // The client reads nothing more while megabytes are published: the server's sends stall, and after 10 s the
        // connection is ended, which ends the member's presence.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var big = new string('x', 30_000);
        using var publisher = _gateway.CreateClient();
        var left = ReadUntilAsync(reader, "\"id\":\"stuck\"", TimeSpan.FromSeconds(60));
        for (var i = 0; i < 400 && !left.IsCompleted; i++)
        {
            await PublishAsync(_gateway, session, "bulk" + i, big);
        }

        Assert.Contains("presence.leave", await left, StringComparison.Ordinal);
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(9), $"left after {clock.Elapsed}, before the send timeout");
        // Well before the hub's own client timeout (30 s without a message from the client) would have ended it.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(25), $"left after {clock.Elapsed}");
    }

    [Fact]
    public async Task Shutdown_ClosesLeanHubConnectionsAsGoingAway_SoClientsReconnect()
    {
        await using var gateway = await StartGatewayAsync(lean: true);
        await using var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(gateway.BaseAddress, "hubs/sessions?clientId=stayer"), o =>
            {
                o.SkipNegotiation = true;
                o.Transports = HttpTransportType.WebSockets;
            })
            .WithAutomaticReconnect([TimeSpan.FromSeconds(30)])
            .Build();
        var reconnecting = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.Reconnecting += e =>
        {
            reconnecting.TrySetResult(e);
            return Task.CompletedTask;
        };
        await connection.StartAsync();
        await connection.InvokeAsync<JsonElement>("Join", NewSession(), (long?)null);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await gateway.StopAsync();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"stopped after {clock.Elapsed}");
        // Not the hub's final "close" message: the client takes it as a lost connection and starts reconnecting.
        await reconnecting.Task.WaitAsync(Patience);
        Assert.Equal(HubConnectionState.Reconnecting, connection.State);
    }

    private static Task<GatewayProcess> StartGatewayAsync(bool lean) => GatewayProcess.StartAsync(new Dictionary<string, string?>
    {
        ["AiStream:DefaultModel"] = "sim",
        ["AiStream:Presence:LeaveGraceSeconds"] = "0",
        ["AiStream:Transports:LeanHubConnections"] = lean ? "true" : "false",
    });

    private static string NewSession() => "leanhub-" + Guid.NewGuid().ToString("N")[..10];

    private static async Task PublishAsync(GatewayProcess gateway, string session, string name, JsonNode value)
    {
        using var http = gateway.CreateClient();
        using var response = await http.PostAsJsonAsync($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = name, ["value"] = value });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Upgrades <paramref name="raw"/> to a WebSocket, speaks the hub handshake and joins <paramref name="session"/> (the answer is not read).</summary>
    private static async Task JoinOverRawWebSocketAsync(RawConnection raw, string clientId, string session, string connectionHeader)
    {
        await raw.SendAsync($"GET /hubs/sessions?clientId={clientId} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: {connectionHeader}\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 101", await raw.ReadHeadAsync(), StringComparison.Ordinal);
        var socket = WebSocket.CreateFromStream(raw.Body, new WebSocketCreationOptions { IsServer = false });
        await SendAsync(socket, "{\"protocol\":\"json\",\"version\":1}");
        await ReceiveAsync(socket);
        await SendAsync(socket, "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Join\",\"arguments\":[\"" + session + "\",null]}");
    }

    private static Task SendAsync(WebSocket socket, string message) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(message + RecordSeparator), WebSocketMessageType.Text, endOfMessage: true, CancellationToken.None);

    private static List<string> Records(string message) => message.Split(RecordSeparator, StringSplitOptions.RemoveEmptyEntries).ToList();

    /// <summary>One whole WebSocket message as text.</summary>
    private static async Task<string> ReceiveAsync(WebSocket socket)
    {
        var message = new MemoryStream();
        var buffer = new byte[4096];
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer, CancellationToken.None).WaitAsync(Patience);
            Assert.Equal(WebSocketMessageType.Text, result.MessageType);
            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage)
            {
                return Encoding.UTF8.GetString(message.ToArray());
            }
        }
    }

    /// <summary>The text of the first event whose text contains <paramref name="marker"/>.</summary>
    private static async Task<string> ReadUntilAsync(SseReader reader, string marker, TimeSpan? patience = null)
    {
        while (true)
        {
            var next = await reader.NextEventAsync().WaitAsync(patience ?? Patience) ?? throw new Xunit.Sdk.XunitException($"the stream ended before {marker}");
            var text = string.Join("\n", next);
            if (text.Contains(marker, StringComparison.Ordinal))
            {
                return text;
            }
        }
    }

    /// <summary>An SSE watch of the session by member <c>observer</c>, read up to its own join.</summary>
    private sealed class Observer : IDisposable
    {
        private readonly HttpClient _client;
        private readonly HttpResponseMessage _response;

        private Observer(HttpClient client, HttpResponseMessage response, SseReader reader)
        {
            (_client, _response, Reader) = (client, response, reader);
        }

        public SseReader Reader { get; }

        public static async Task<Observer> WatchAsync(GatewayProcess gateway, string session)
        {
            var client = gateway.CreateClient();
            var response = await client.GetAsync($"api/sessions/{session}/events?clientId=observer", HttpCompletionOption.ResponseHeadersRead);
            var observer = new Observer(client, response, new SseReader(await response.Content.ReadAsStreamAsync()));
            await ReadUntilAsync(observer.Reader, "\"id\":\"observer\"");
            return observer;
        }

        public void Dispose()
        {
            Reader.Dispose();
            _response.Dispose();
            _client.Dispose();
        }
    }

    /// <summary>An official .NET client over WebSockets and the raw JSON of every session event it gets.</summary>
    private sealed class HubClient : IAsyncDisposable
    {
        private readonly Channel<string> _events = Channel.CreateUnbounded<string>();

        private HubClient(HubConnection connection)
        {
            Connection = connection;
            connection.On<string, JsonElement>("Event", (_, e) => _events.Writer.TryWrite(e.GetRawText()));
        }

        public HubConnection Connection { get; }

        public static async Task<HubClient> ConnectAsync(Uri baseAddress, string clientId, bool skipNegotiation)
        {
            var connection = new HubConnectionBuilder()
                .WithUrl(new Uri(baseAddress, "hubs/sessions?clientId=" + clientId), o =>
                {
                    o.SkipNegotiation = skipNegotiation;
                    o.Transports = HttpTransportType.WebSockets;
                })
                .Build();
            var client = new HubClient(connection);
            await connection.StartAsync();
            return client;
        }

        /// <summary>Session events other than presence, up to and including the first that matches.</summary>
        public async Task<List<string>> ReadUntilAsync(Func<string, bool> stop)
        {
            using var cts = new CancellationTokenSource(Patience);
            var events = new List<string>();
            while (true)
            {
                var e = await _events.Reader.ReadAsync(cts.Token);
                if (JsonNode.Parse(e)!["name"]?.GetValue<string>() is { } name && name.StartsWith("presence.", StringComparison.Ordinal))
                {
                    continue;
                }

                events.Add(e);
                if (stop(e))
                {
                    return events;
                }
            }
        }

        public async ValueTask DisposeAsync() => await Connection.DisposeAsync();
    }
}
