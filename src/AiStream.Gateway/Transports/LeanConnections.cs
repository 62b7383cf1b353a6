using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using AiStream.Gateway.Completions;
using AiStream.Gateway.Presence;
using Microsoft.AspNetCore.SignalR;
using Microsoft.Extensions.Options;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Serves plain HTTP/1.1 SSE watches (<c>GET /api/sessions/{id}/events</c>, <c>AiStream:Transports:LeanSseConnections</c>)
/// and SignalR hub connections that skip negotiation (a WebSocket upgrade of <c>GET /hubs/sessions</c>,
/// <c>AiStream:Transports:LeanHubConnections</c>) at the connection level, as Kestrel connection middleware ahead of
/// its HTTP layer.
/// <para>
/// Why: a watch or a WebSocket served through the request pipeline keeps Kestrel's whole HTTP/1.1 request state alive
/// for as long as it is open (the connection object, request and response header collections, two more pipes, the
/// HttpContext and its features, the request's Activity and logging scopes, each middleware's pending frame): about
/// 12 KB of the 15 KB an SSE watcher cost, and as much again for a hub connection, plus SignalR's HTTP connection
/// object and its pipes. No option of Kestrel drops that state while a response is in flight, so this path reads the
/// request head itself (<see cref="LeanRequestHead"/>) and keeps only the socket transport and what the watch or the
/// hub needs.
/// </para>
/// <para>
/// It takes a connection only when the first request on it is one it fully understands and that passes the same
/// checks as the endpoint (<see cref="SessionSseWatch.Check"/>, <see cref="ClientIdentity.FromValues"/>); everything
/// else, including invalid requests (which then get the endpoint's or the hub's answer), TLS, HTTP/2, negotiated hub
/// connections and every later request on a kept-alive connection, reaches Kestrel's HTTP layer untouched: nothing is
/// consumed until the request is accepted. A watch is the endpoint's stream (<see cref="SessionSseWatch.RunAsync"/>),
/// byte for byte, with <c>Connection: close</c> instead of chunked encoding; a hub connection is SignalR's own hub
/// handler on a WebSocket (<see cref="LeanHubConnection"/>).
/// </para>
/// </summary>
internal sealed class LeanConnections : IDisposable
{
    private readonly SessionSseWatch _watch;
    private readonly IServiceProvider _services;
    private readonly TransportsOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<LeanConnections> _logger;
    private readonly Lock _peeksLock = new();
    private readonly SlotList<Peek> _peeks = new();
    private readonly ITimer _sweep;

    private readonly Action<PipeWriter> _writeUnavailable;
    private ConnectionHandler? _hub;

    public LeanConnections(SessionSseWatch watch, IServiceProvider services, IOptions<TransportsOptions> options, TimeProvider time, ILogger<LeanConnections> logger)
    {
        _watch = watch;
        _services = services;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _writeUnavailable = output => WriteProblem(output, SessionSseWatch.Unavailable, _time.GetUtcNow());
        // One timer ends every overdue wait for a first request, instead of a timer per connection.
        _sweep = time.CreateTimer(static s => ((LeanConnections)s!).Sweep(), this, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>Puts the lean path in front of <paramref name="next"/>, the rest of an endpoint's connection pipeline.</summary>
    public ConnectionDelegate Wrap(ConnectionDelegate next, KestrelServerOptions kestrel) =>
        connection => OnConnectedAsync(connection, next, kestrel);

    public void Dispose() => _sweep.Dispose();

    // Kept small: every connection (completions, negotiated SignalR, lean hub connections...) holds this frame for its life.
    private async Task OnConnectedAsync(ConnectionContext connection, ConnectionDelegate next, KestrelServerOptions kestrel)
    {
        var accepted = await AcceptAsync(connection.Transport.Input, kestrel.Limits.RequestHeadersTimeout);
        await (accepted is null ? next(connection) : accepted.Hub is null ? ServeAsync(connection, accepted) : ServeHubAsync(connection, accepted));
    }

    /// <summary>
    /// Waits for the first request head and reads it without consuming anything, so Kestrel sees the same bytes when
    /// the request is not ours. A client that sends nothing within the headers timeout is left to Kestrel's timeouts.
    /// </summary>
    private async ValueTask<Accepted?> AcceptAsync(PipeReader input, TimeSpan timeout)
    {
        var peek = new Peek(input, _time.GetTimestamp() + (long)(timeout.TotalSeconds * _time.TimestampFrequency));
        lock (_peeksLock)
        {
            _peeks.Add(peek);
        }

        var sawCancel = false;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                sawCancel = result.IsCanceled;
                var buffer = result.Buffer;
                LeanRequestHead? head = null;
                var status = result.IsCanceled ? LeanRequestHead.ParseStatus.NotOurs : LeanRequestHead.TryParse(buffer, out head);
                if (status == LeanRequestHead.ParseStatus.Incomplete && !result.IsCompleted)
                {
                    // Examined all of it, consumed none: the next read waits for more bytes.
                    input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }

                // Examined none: whoever reads next (the serve path or Kestrel) gets the same bytes at once.
                input.AdvanceTo(buffer.Start);
                return status == LeanRequestHead.ParseStatus.Parsed ? Accept(head!, _options, _time.GetUtcNow()) : null;
            }
        }
        catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException or OperationCanceledException)
        {
            // The connection failed before a request: Kestrel meets the same error and deals with it as it always does.
            return null;
        }
        finally
        {
            lock (_peeksLock)
            {
                _peeks.Remove(peek);
                if (peek.Cancelled && !sawCancel && input.TryRead(out var pending))
                {
                    // The sweep cancelled just as the head arrived: take the cancellation here, not in the next reader.
                    input.AdvanceTo(pending.Buffer.Start);
                }
            }
        }
    }

    private void Sweep()
    {
        var now = _time.GetTimestamp();
        lock (_peeksLock)
        {
            for (var i = _peeks.Count - 1; i >= 0; i--)
            {
                var peek = _peeks[i];
                if (now >= peek.Deadline)
                {
                    // The pending read returns IsCanceled and the connection goes to Kestrel.
                    peek.Input.CancelPendingRead();
                    peek.Cancelled = true;
                    _peeks.Remove(peek);
                }
            }
        }
    }

    /// <summary>Checks the request as the endpoint or the hub does and renders the response head; null sends it to Kestrel.</summary>
    private static Accepted? Accept(LeanRequestHead head, TransportsOptions options, DateTimeOffset now)
    {
        if (head.Kind == LeanRequestHead.RequestKind.Hub)
        {
            // The hub refuses a bad identity after its handshake; Kestrel's path gives the client exactly that.
            var (identity, _, _) = ClientIdentity.FromValues(head.ClientId, head.Name, head.Color, head.Remembered);
            return options.LeanHubConnections && identity is not null
                ? new Accepted(default, LeanHubConnection.SwitchingProtocols(head.WebSocketKey!, now), head.Length, identity)
                : null;
        }

        if (!options.LeanSseConnections)
        {
            return null;
        }

        var (request, _, generated) = SessionSseWatch.Check(head.SessionId, head.LastEventId, head.After, head.ClientId, head.Name, head.Color, head.Remembered);
        if (request is not { } checkedRequest)
        {
            return null;
        }

        var text = new StringBuilder(256).Append("HTTP/1.1 200 OK\r\nConnection: close\r\nDate: ")
            .Append(now.ToString("r", CultureInfo.InvariantCulture)).Append("\r\n");
        foreach (var (name, value) in SessionSseWatch.ResponseHeaders(checkedRequest.Identity.Id, generated))
        {
            if (!IsFieldValue(value))
            {
                return null;
            }

            text.Append(name).Append(": ").Append(value).Append("\r\n");
        }

        text.Append("\r\n");
        return new Accepted(checkedRequest, Encoding.ASCII.GetBytes(text.ToString()), head.Length, null);
    }

    /// <summary>Answers the upgrade and runs the hub; not async itself, so a hub connection holds no frame of it.</summary>
    private Task ServeHubAsync(ConnectionContext connection, Accepted accepted)
    {
        var input = connection.Transport.Input;
        // The head is buffered and unexamined (AcceptAsync), so it is there to take.
        if (!input.TryRead(out var read))
        {
            return Task.CompletedTask;
        }

        input.AdvanceTo(read.Buffer.GetPosition(accepted.HeadLength));
        connection.Transport.Output.Write(accepted.ResponseHead);
        _hub ??= _services.GetRequiredService<HubConnectionHandler<SessionHub>>();
        return LeanHubConnection.RunAsync(connection, accepted.Hub!, _hub, _time, _logger);
    }

    /// <summary>
    /// Runs the watch; not async itself, so an idle watch holds no frame of it. The watch's presence connection is
    /// the Kestrel connection id (Kestrel's own path uses the request's trace identifier, <c>{id}:00000001</c>, so the
    /// two never collide), one string less per watcher.
    /// </summary>
    private Task ServeAsync(ConnectionContext connection, Accepted accepted)
    {
        var input = connection.Transport.Input;
        // The head is buffered and unexamined (AcceptAsync), so it is there to take.
        if (!input.TryRead(out var read))
        {
            return Task.CompletedTask;
        }

        input.AdvanceTo(read.Buffer.GetPosition(accepted.HeadLength));
        // Returning completes the transport: buffered bytes are sent, then the connection closes.
        return _watch.RunAsync(accepted.Request, connection.Transport.Output, accepted.ResponseHead, connection.ConnectionId, _writeUnavailable, connection.ConnectionClosed);
    }

    private static void WriteProblem(PipeWriter output, ApiError error, DateTimeOffset now)
    {
        var body = JsonSerializer.SerializeToUtf8Bytes(error.ToBody(), CompletionsJsonContext.Default.ApiErrorBody);
        var head = string.Create(CultureInfo.InvariantCulture,
            $"HTTP/1.1 {error.Status} {ReasonPhrases(error.Status)}\r\nConnection: close\r\nDate: {now:r}\r\nContent-Type: application/problem+json\r\nContent-Length: {body.Length}\r\n\r\n");
        output.Write(Encoding.ASCII.GetBytes(head));
        output.Write(body);
    }

    private static string ReasonPhrases(int status) => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status);

    private static bool IsFieldValue(string value)
    {
        foreach (var c in value)
        {
            if (c is < ' ' and not '\t' or > '~')
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>An accepted request: a watch (<paramref name="Request"/>) or a hub connection (<paramref name="Hub"/>, its identity).</summary>
    private sealed record Accepted(SessionSseWatch.Request Request, byte[] ResponseHead, int HeadLength, MemberIdentity? Hub);

    /// <summary>A connection waiting for its first request head.</summary>
    private sealed class Peek(PipeReader input, long deadline) : Slotted
    {
        public PipeReader Input { get; } = input;

        public long Deadline { get; } = deadline;

        public bool Cancelled { get; set; }
    }
}

/// <summary>Log messages of <see cref="LeanConnections"/>.</summary>
internal static partial class LeanConnectionsLog
{
    [LoggerMessage(EventId = 5201, Level = LogLevel.Error, Message = "Hub connection {ConnectionId} on the lean path failed.")]
    public static partial void HubFailed(ILogger logger, string connectionId, Exception exception);
}
