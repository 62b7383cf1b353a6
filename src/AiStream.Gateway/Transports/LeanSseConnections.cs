using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using AiStream.Gateway.Completions;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Serves plain HTTP/1.1 SSE watches (<c>GET /api/sessions/{id}/events</c>) at the connection level, as Kestrel
/// connection middleware ahead of its HTTP layer (<c>AiStream:Transports:LeanSseConnections</c>).
/// <para>
/// Why: an idle watch served through the request pipeline keeps Kestrel's whole HTTP/1.1 request state alive for as
/// long as it is open (the connection object, request and response header collections, two more pipes, the HttpContext
/// and its features, the request's Activity and logging scopes, each middleware's pending frame): about 12 KB of the
/// 15 KB a watcher cost. No option of Kestrel drops that state while a response is in flight, so this path reads the
/// request head itself (<see cref="SseRequestHead"/>), answers with a close-delimited stream, and keeps only the
/// socket transport and the watch.
/// </para>
/// <para>
/// It takes a connection only when the first request on it is a watch it fully understands and that passes the same
/// checks as the endpoint (<see cref="SessionSseWatch.Prepare"/>); everything else, including invalid watches (which
/// then get the endpoint's 400), TLS, HTTP/2 and every later request on a kept-alive connection, reaches Kestrel's HTTP
/// layer untouched: nothing is consumed until the request is accepted. The stream is the endpoint's
/// (<see cref="SessionSseWatch.RunAsync"/>), byte for byte; the response head differs only in <c>Connection: close</c>
/// instead of chunked encoding.
/// </para>
/// </summary>
internal sealed partial class LeanSseConnections(SessionSseWatch watch, TimeProvider time, ILogger<LeanSseConnections> logger)
{
    /// <summary>Puts the lean path in front of <paramref name="next"/>, the rest of an endpoint's connection pipeline.</summary>
    public ConnectionDelegate Wrap(ConnectionDelegate next, KestrelServerOptions kestrel) =>
        connection => OnConnectedAsync(connection, next, kestrel);

    private async Task OnConnectedAsync(ConnectionContext connection, ConnectionDelegate next, KestrelServerOptions kestrel)
    {
        // The parsed head is dropped inside AcceptAsync: this frame lives as long as the watch.
        var accepted = await AcceptAsync(connection.Transport.Input, kestrel.Limits.RequestHeadersTimeout);
        if (accepted is null)
        {
            await next(connection);
            return;
        }

        var input = connection.Transport.Input;
        // The head is buffered and unexamined (PeekAsync), so this read completes at once.
        var read = await input.ReadAsync();
        input.AdvanceTo(read.Buffer.GetPosition(accepted.HeadLength));
        read = default;
        var output = connection.Transport.Output;
        var closed = connection.ConnectionClosed;
        var request = accepted.Request;
        try
        {
            var running = watch.RunAsync(request, output, accepted.ResponseHead, connection.ConnectionId + ":00000001", closed);
            accepted = null;
            if (await running is { } failure)
            {
                SessionSubscriberLog.StartFailed(logger, request.SessionId, failure);
                WriteProblem(output, SessionSseWatch.Unavailable, time.GetUtcNow());
                await output.FlushAsync(closed);
            }
        }
        catch (OperationCanceledException) when (closed.IsCancellationRequested)
        {
            // The watcher left before the stream started.
        }

        // Returning completes the transport: buffered bytes are sent, then the connection closes.
    }

    private async ValueTask<Accepted?> AcceptAsync(PipeReader input, TimeSpan timeout) =>
        await PeekAsync(input, timeout) is { } head ? Accept(head, time.GetUtcNow()) : null;

    /// <summary>
    /// Waits for the first request head and reads it without consuming anything, so Kestrel sees the same bytes when
    /// the request is not ours. A client that sends nothing within the headers timeout is left to Kestrel's timeouts.
    /// </summary>
    private async ValueTask<SseRequestHead?> PeekAsync(PipeReader input, TimeSpan timeout)
    {
        using var expiry = new CancellationTokenSource(timeout, time);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(expiry.Token);
                var buffer = result.Buffer;
                var status = SseRequestHead.TryParse(buffer, out var head);
                if (status == SseRequestHead.ParseStatus.Incomplete && !result.IsCompleted && !result.IsCanceled)
                {
                    // Examined all of it, consumed none: the next read waits for more bytes.
                    input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }

                // Examined none: whoever reads next (the serve path or Kestrel) gets the same bytes at once.
                input.AdvanceTo(buffer.Start);
                return head;
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>Checks the watch as the endpoint does and renders the response head; null sends it to Kestrel.</summary>
    private static Accepted? Accept(SseRequestHead head, DateTimeOffset now)
    {
        var context = new DefaultHttpContext();
        var request = context.Request;
        request.Method = HttpMethods.Get;
        request.Scheme = "http";
        request.Protocol = "HTTP/1.1";
        request.Path = new PathString(head.Path);
        request.QueryString = new QueryString(head.Query.Length == 0 ? null : head.Query);
        foreach (var (name, value) in head.Headers)
        {
            request.Headers.Append(name, value);
        }

        var (watchRequest, _) = SessionSseWatch.Prepare(context, head.SessionId);
        if (watchRequest is not { } checkedRequest)
        {
            return null;
        }

        var text = new StringBuilder("HTTP/1.1 200 OK\r\nConnection: close\r\nDate: ")
            .Append(now.ToString("r", CultureInfo.InvariantCulture)).Append("\r\n");
        foreach (var (name, values) in context.Response.Headers)
        {
            foreach (var value in values)
            {
                if (value is null || !IsFieldValue(value))
                {
                    return null;
                }

                text.Append(name).Append(": ").Append(value).Append("\r\n");
            }
        }

        text.Append("\r\n");
        return new Accepted(checkedRequest, Encoding.ASCII.GetBytes(text.ToString()), head.Length);
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

    private sealed record Accepted(SessionSseWatch.Request Request, byte[] ResponseHead, int HeadLength);
}
