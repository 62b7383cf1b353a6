using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using AiStream.Gateway.Api;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Security;
using AiStream.Gateway.Sessions;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Transports;

/// <summary><c>GET /api/sessions/{id}/events</c>: the session log as Server-Sent Events, resumable with Last-Event-ID.</summary>
internal static class SessionSseEndpoint
{
    public static IEndpointRouteBuilder MapSessionSse(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/sessions/{sessionId}/events", WatchAsync).WithTags("Sessions");
        return app;
    }

    private static async Task<IResult> WatchAsync(HttpContext context, string sessionId, SessionSseWatch watch, SessionLimitsHandler limits)
    {
        var (request, error) = SessionSseWatch.Prepare(context, sessionId);
        if (request is not { } watchRequest)
        {
            return error!;
        }

        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        if (await watch.RunAsync(watchRequest, context.Response.BodyWriter, context.TraceIdentifier, context.RequestAborted) is { } failure)
        {
            // Nothing was written yet.
            if (limits.Answer(failure) is { } bound)
            {
                return bound.ToResult();
            }

            return SessionSseWatch.Unavailable.ToResult();
        }

        return Results.Empty;
    }
}

/// <summary>
/// One SSE watch of a session: the checks and response headers (<see cref="Prepare"/>), then the stream itself
/// (<see cref="RunAsync"/>).
/// </summary>
internal sealed class SessionSseWatch(
    ISessionStore store,
    IPresenceStore presence,
    IOptions<SessionsOptions> sessionOptions,
    IOptions<TransportsOptions> transportOptions,
    WatchTicker ticker,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILogger<SessionSubscriberLog> logger)
{
    /// <summary>The close reason of watches ended because the host is stopping.</summary>
    public const string ShuttingDown = "the gateway is shutting down; reconnect";

    /// <summary>The close reason of watches whose credential expired.</summary>
    public const string AuthExpired = "the credential expired; reconnect with a fresh token";

    /// <summary>The frame a watch ends with when its credential expires: a CUSTOM event without a position.</summary>
    private static readonly byte[] AuthExpiredFrame =
        "data: {\"type\":\"CUSTOM\",\"name\":\"auth.expired\",\"value\":{\"reason\":\"the credential expired; reconnect with a fresh token and Last-Event-ID\"}}\n\n"u8.ToArray();

    // Open watches would otherwise hold the shutdown until its timeout and then be cut without a word.
    private readonly CancellationTokenRegistration _onStopping =
        lifetime.ApplicationStopping.Register(static t => ((WatchTicker)t!).CloseWatches(ShuttingDown), ticker);

    /// <summary>The answer when the session store cannot take a watcher (Redis unreachable and nothing to fall back on).</summary>
    public static readonly ApiError Unavailable = new(StatusCodes.Status503ServiceUnavailable,
        "The session store is unavailable; retry shortly.", "server_error", "session_store_unavailable");

    /// <summary>A checked watch request; <c>ExpiresAt</c> is when the caller's credential stops being valid.</summary>
    public readonly record struct Request(string SessionId, long? After, MemberIdentity Identity, DateTimeOffset? ExpiresAt = null);

    /// <summary>Checks the request (id, rights, position, identity); when it is valid, sets the response headers of the stream.</summary>
    public static (Request? Request, IResult? Error) Prepare(HttpContext context, string sessionId)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } idError)
        {
            return (null, idError.ToResult());
        }

        if (SessionAccess.Require(context, sessionId, SessionRights.Read) is { } denied)
        {
            return (null, denied);
        }

        var caller = CallerGrants.Of(context);
        context.Request.Cookies.TryGetValue(ClientIdentity.CookieName, out var remembered);
        var query = context.Request.Query;
        var (request, error, generated) = Check(
            sessionId,
            context.Request.Headers["Last-Event-ID"].ToString(),
            query["after"].ToString(),
            query["clientId"].ToString(),
            query["name"].ToString(),
            query["color"].ToString(),
            remembered);
        if (request is not { } checkedRequest)
        {
            return (null, error!.ToResult());
        }

        // (The color was checked above, so an authenticated caller always has an identity here.)
        if (ClientIdentity.FromCaller(caller, query["color"].ToString()) is { Identity: { } member })
        {
            // The credential names the member; the query's clientId and the cookie do not.
            checkedRequest = checkedRequest with { Identity = member, ExpiresAt = caller.ExpiresAt };
            generated = false;
        }

        foreach (var (name, value) in ResponseHeaders(checkedRequest.Identity.Id, generated))
        {
            context.Response.Headers.Append(name, value);
        }

        return (checkedRequest, null);
    }

    /// <summary>
    /// The checks of a watch on values already read (empty means absent): session id, position (Last-Event-ID wins
    /// over <c>?after=</c>) and identity. <c>Generated</c> says the client gets a new anonymous id and its cookie.
    /// </summary>
    private static (Request? Request, ApiError? Error, bool Generated) Check(
        string sessionId, string lastEventId, string after, string clientId, string name, string color, string? remembered)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } idError)
        {
            return (null, idError, false);
        }

        // Last-Event-ID (what EventSource sends on reconnect) wins over ?after=.
        var position = lastEventId.Length > 0 ? lastEventId : after;
        long? afterSeq = null;
        if (position.Length > 0)
        {
            if (!long.TryParse(position, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
            {
                return (null, ApiError.BadRequest("Last-Event-ID / after must be a non-negative integer position.", "after", "invalid_position"), false);
            }

            afterSeq = parsed;
        }

        var (identity, identityError, generated) = ClientIdentity.FromValues(clientId, name, color, remembered);
        return identity is null
            ? (null, ApiError.BadRequest(identityError!, "clientId", "invalid_identity"), false)
            : (new Request(sessionId, afterSeq, identity), null, generated);
    }

    /// <summary>The response headers of a watch stream.</summary>
    private static IEnumerable<(string Name, string Value)> ResponseHeaders(string clientId, bool setCookie)
    {
        if (setCookie)
        {
            yield return ("Set-Cookie", ClientIdentity.SetCookie(clientId));
        }

        yield return ("X-AiStream-Client-Id", clientId);
        yield return ("Content-Type", "text/event-stream; charset=utf-8");
        yield return ("Cache-Control", "no-cache");
        yield return ("X-Accel-Buffering", "no");
    }

    /// <summary>
    /// Streams the session to <paramref name="writer"/> until the watcher leaves or is dropped. A failure to subscribe
    /// is logged and returned, not thrown, with nothing written, so the endpoint can still answer with a problem.
    /// </summary>
    /// <remarks>
    /// The delivery loop is here rather than in <see cref="SessionEventStream.WriteAsync"/>: awaiting that would keep a
    /// second state machine alive per idle watcher.
    /// </remarks>
    public async Task<Exception?> RunAsync(Request request, PipeWriter writer, string connectionId, CancellationToken cancellationToken)
    {
        var (sessionId, after, identity, _) = request;
        var options = sessionOptions.Value;
        var subscriber = new Subscriber(options.CoalesceThreshold, options.SubscriberHardLimit);
        SubscribeResult? first;
        try
        {
            first = await store.SubscribeAsync(sessionId, after, subscriber, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return null; // the watcher left before the stream started
        }
        catch (Exception e)
        {
            SessionSubscriberLog.StartFailed(logger, sessionId, e);
            return e;
        }

        SessionSubscriberLog.Joined(logger, sessionId, after ?? -1, first.HeadSeq, first.IsSnapshot);
        using var registration = cancellationToken.Register(static s => ((Subscriber)s!).Close(), subscriber);
        // Watching makes the client present; the ticker renews the connection and sends heartbeats while it stays open.
        try
        {
            await presence.ConnectAsync(sessionId, identity, connectionId);
        }
        catch (MemberLimitExceededException e)
        {
            store.Unsubscribe(sessionId, subscriber);
            return e; // a quota, answered and counted; not a failure of the node
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            store.Unsubscribe(sessionId, subscriber);
            SessionSubscriberLog.StartFailed(logger, sessionId, e);
            return e;
        }

        var ticking = ticker.Add(subscriber, sessionId, identity.Id, connectionId);
        // Only watches with an expiring credential pay for a timer; it closes the watch at the credential's expiry.
        using var expiry = request.ExpiresAt is { } expiresAt
            ? time.CreateTimer(static s => ((Subscriber)s!).Close(AuthExpired), subscriber, Clamp(expiresAt - time.GetUtcNow()), Timeout.InfiniteTimeSpan)
            : null;
        try
        {
            SessionFrames.WriteRetry(writer, transportOptions.Value.SseRetryMilliseconds);
            SessionEventStream.WriteAll(writer, first.Events);
            // The catch-up events (a snapshot can be large) are written by now; the watch must not keep them alive.
            first = null;
            var flushed = await writer.FlushAsync(cancellationToken);
            var batch = new List<SessionEvent>(); // grows to the largest drain; an idle watcher holds none
            while (!flushed.IsCompleted && !flushed.IsCanceled)
            {
                // Subscriber.TryDrain and WaitAsync rather than DrainAsync: waiting then allocates nothing per event.
                var drained = subscriber.TryDrain(batch);
                while (drained is null)
                {
                    await subscriber.WaitAsync().ConfigureAwait(false);
                    drained = subscriber.TryDrain(batch);
                }

                if (!drained.Value.Open)
                {
                    break;
                }

                SessionEventStream.WriteBatch(writer, batch, drained.Value.Heartbeat);
                flushed = await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            if (subscriber.CloseReason is { } reason && !cancellationToken.IsCancellationRequested)
            {
                if (ReferenceEquals(reason, AuthExpired))
                {
                    writer.Write(AuthExpiredFrame);
                }
                else if (!string.Equals(reason, ShuttingDown, StringComparison.Ordinal))
                {
                    SessionSubscriberLog.Dropped(logger, sessionId, reason);
                }

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
            ticker.Remove(ticking);
            store.Unsubscribe(sessionId, subscriber);
            await presence.DisconnectAsync(sessionId, identity.Id, connectionId);
        }

        return null;
    }

    /// <summary>A timer's due time: an already expired credential closes at once, a far one waits at most ~24 days.</summary>
    private static TimeSpan Clamp(TimeSpan due) =>
        due <= TimeSpan.Zero ? TimeSpan.Zero : due > TimeSpan.FromDays(24) ? TimeSpan.FromDays(24) : due;
}

/// <summary>Log messages of session subscribers (SSE and SignalR).</summary>
internal sealed partial class SessionSubscriberLog
{
    [LoggerMessage(EventId = 5001, Level = LogLevel.Debug, Message = "Watcher joined session {SessionId} after {After}; head {Head}, snapshot {Snapshot}")]
    public static partial void Joined(ILogger logger, string sessionId, long after, long head, bool snapshot);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Warning, Message = "Watcher of session {SessionId} dropped: {Reason}")]
    public static partial void Dropped(ILogger logger, string sessionId, string reason);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Error, Message = "Watch of session {SessionId} could not start")]
    public static partial void StartFailed(ILogger logger, string sessionId, Exception exception);
}
