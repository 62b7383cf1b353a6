using System.Buffers;
using System.Globalization;
using System.Text;

namespace AiStream.LoadTest.Floor;

/// <summary>
/// The floor's SSE watch: the gateway's response headers, a <c>retry:</c> hint and one event, then a heartbeat comment
/// every 15 s until the client leaves. It holds what any SSE endpoint holds (the request, its state machine, one timer)
/// and nothing per session.
/// </summary>
internal static class FloorSse
{
    private static readonly TimeSpan HeartbeatEvery = TimeSpan.FromSeconds(15);

    public static async Task WatchAsync(HttpContext context, string sessionId)
    {
        if (!SessionIds.IsValid(sessionId))
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            return;
        }

        var cancellationToken = context.RequestAborted;
        var headers = context.Response.Headers;
        var clientId = context.User.FindFirst("sub")?.Value ?? context.Request.Query["clientId"].ToString();
        headers["X-AiStream-Client-Id"] = clientId.Length > 0 ? clientId : "anonymous";
        headers.ContentType = "text/event-stream; charset=utf-8";
        headers.CacheControl = "no-cache";
        headers["X-Accel-Buffering"] = "no";

        // The session id was checked above (letters, digits and - _ : .), so it needs no JSON escaping.
        var writer = context.Response.BodyWriter;
        writer.Write("retry: 2000\n\n"u8);
        writer.Write(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $$"""id: 0{{"\n"}}data: {"type":"CUSTOM","name":"floor.ready","value":"{{sessionId}}","seq":0}{{"\n\n"}}""")));

        // One PeriodicTimer per watch: the smallest way to write a heartbeat on an otherwise idle stream.
        using var heartbeat = new PeriodicTimer(HeartbeatEvery);
        try
        {
            var flushed = await writer.FlushAsync(cancellationToken);
            while (!flushed.IsCompleted && await heartbeat.WaitForNextTickAsync(cancellationToken))
            {
                writer.Write(": heartbeat\n\n"u8);
                flushed = await writer.FlushAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client left.
        }
    }
}
