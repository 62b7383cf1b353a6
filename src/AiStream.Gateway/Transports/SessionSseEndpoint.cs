using System.Globalization;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Transports;

/// <summary><c>GET /api/sessions/{id}/events</c>: the session log as Server-Sent Events, resumable with Last-Event-ID.</summary>
internal static partial class SessionSseEndpoint
{
    public static IEndpointRouteBuilder MapSessionSse(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/sessions/{sessionId}/events", WatchAsync).WithTags("Sessions");
        return app;
    }

    private static async Task<IResult> WatchAsync(
        HttpContext context,
        string sessionId,
        ISessionStore store,
        IPresenceStore presence,
        IOptions<SessionsOptions> sessionOptions,
        IOptions<TransportsOptions> transportOptions,
        TimeProvider time,
        ILogger<SessionSubscriberLog> logger)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } idError)
        {
            return idError.ToResult();
        }

        // Last-Event-ID (what EventSource sends on reconnect) wins over ?after=.
        var position = context.Request.Headers["Last-Event-ID"].ToString();
        if (position.Length == 0)
        {
            position = context.Request.Query["after"].ToString();
        }

        long? after = null;
        if (position.Length > 0)
        {
            if (!long.TryParse(position, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
            {
                return Completions.ApiError.BadRequest("Last-Event-ID / after must be a non-negative integer position.", "after", "invalid_position").ToResult();
            }

            after = parsed;
        }

        var (identity, identityError) = ClientIdentity.FromRequest(context);
        if (identity is null)
        {
            return Completions.ApiError.BadRequest(identityError!, "clientId", "invalid_identity").ToResult();
        }

        var cancellationToken = context.RequestAborted;
        var response = context.Response;
        response.Headers["X-AiStream-Client-Id"] = identity.Id;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        var options = sessionOptions.Value;
        var subscriber = new Subscriber(options.CoalesceThreshold, options.SubscriberHardLimit);
        var writer = response.BodyWriter;
        var first = await store.SubscribeAsync(sessionId, after, subscriber, cancellationToken);
        SessionSubscriberLog.Joined(logger, sessionId, after ?? -1, first.HeadSeq, first.IsSnapshot);
        var heartbeat = TimeSpan.FromSeconds(transportOptions.Value.SseHeartbeatSeconds);
        using var heartbeats = time.CreateTimer(static s => ((Subscriber)s!).RequestHeartbeat(), subscriber, heartbeat, heartbeat);
        using var registration = cancellationToken.Register(static s => ((Subscriber)s!).Close(), subscriber);
        // Watching makes the client present; the connection is renewed while it stays open.
        var connectionId = context.TraceIdentifier;
        await presence.ConnectAsync(sessionId, identity, connectionId);
        using var renewal = time.CreateTimer(_ => presence.Renew(sessionId, identity.Id, connectionId), null, presence.RenewInterval, presence.RenewInterval);
        try
        {
            SessionFrames.WriteRetry(writer, transportOptions.Value.SseRetryMilliseconds);
            await SessionEventStream.WriteAsync(writer, first.Events, subscriber, null, null, cancellationToken);

            if (subscriber.CloseReason is { } reason && !cancellationToken.IsCancellationRequested)
            {
                SessionSubscriberLog.Dropped(logger, sessionId, reason);
                SessionFrames.WriteComment(writer, "disconnected: " + reason);
                await writer.FlushAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The watcher left.
        }
        finally
        {
            store.Unsubscribe(sessionId, subscriber);
            await presence.DisconnectAsync(sessionId, identity.Id, connectionId);
        }

        return Results.Empty;
    }
}

/// <summary>Log messages of session subscribers (SSE and SignalR).</summary>
internal sealed partial class SessionSubscriberLog
{
    [LoggerMessage(EventId = 5001, Level = LogLevel.Debug, Message = "Watcher joined session {SessionId} after {After}; head {Head}, snapshot {Snapshot}")]
    public static partial void Joined(ILogger logger, string sessionId, long after, long head, bool snapshot);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "Watcher of session {SessionId} dropped: {Reason}")]
    public static partial void Dropped(ILogger logger, string sessionId, string reason);
}
