using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Security;
using AiStream.Gateway.Sessions;
using AiStream.Gateway.Transports;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.AiSdk;

/// <summary>
/// The Vercel AI SDK's chat backend (<c>useChat</c> with <c>DefaultChatTransport</c>), as projections of the session
/// log: <c>POST /api/chat</c> starts a run in session <c>id</c> and streams it, <c>GET /api/chat/{id}/stream</c>
/// resumes the active run from its start, <c>POST /api/chat/{id}/stop</c> cancels it for everyone. The run is the
/// session's: SSE, SignalR and AG-UI watchers of the session see the same one.
/// </summary>
internal static partial class AiSdkEndpoints
{
    /// <summary>Most bytes of a chat request (the whole conversation travels with every message).</summary>
    private const long MaxRequestBytes = 4 * 1024 * 1024;

    public static IEndpointRouteBuilder MapAiSdk(this IEndpointRouteBuilder app)
    {
        var chat = app.MapGroup("/api/chat").WithTags("AI SDK");
        chat.MapPost("/", SendAsync);
        chat.MapGet("/{sessionId}/stream", ResumeAsync);
        chat.MapPost("/{sessionId}/stop", StopAsync);
        return app;
    }

    private static async Task<IResult> SendAsync(
        HttpContext context, ISessionStore store, RunManager runs, CallerLimits limits, IOptions<SessionsOptions> sessionOptions, WatchTicker ticker, ILogger<ChatStreamLog> logger)
    {
        var cancellationToken = context.RequestAborted;
        var (start, invalid) = await SessionsEndpoints.ReadRunStartAsync(context, MaxRequestBytes, "id", "The chat request {id, messages, trigger}", cancellationToken);
        if (start is not { Body: var input, SessionId: var sessionId })
        {
            return invalid!;
        }

        var trigger = input["trigger"] is JsonValue t && t.GetValueKind() == JsonValueKind.String ? t.GetValue<string>() : null;
        if (input["trigger"] is not null && trigger is not ("submit-message" or "regenerate-message"))
        {
            return ApiError.BadRequest("'trigger' must be \"submit-message\" or \"regenerate-message\".", "trigger").ToResult();
        }

        // The gateway's own run fields (model, prompt and variables, agent, tools) travel beside the messages: the
        // transport's `body` option.
        var (runBody, bodyError) = SessionsEndpoints.RunBody(input);
        if (bodyError is not null)
        {
            return bodyError.ToResult();
        }

        var options = sessionOptions.Value;
        var (messages, messagesError) = UiMessages.ToAgUi(input["messages"], await store.MessagesAsync(sessionId, cancellationToken));
        if (messagesError is not null)
        {
            return messagesError.ToResult();
        }

        // Counted once the request is known to be one (a malformed one spends nothing).
        if (await limits.TryStartRunAsync(context, cancellationToken) is { } retry)
        {
            return LimitsHosting.TooMany(context, "Too many runs started (AiStream:Limits:RunsPerMinute).", "too_many_runs", retry);
        }

        var runId = "run_" + Guid.NewGuid().ToString("N")[..20];
        // Subscribe to this run's events before it starts, so `start` is the first thing streamed.
        var subscriber = new Subscriber(options.CoalesceThreshold, options.SubscriberHardLimit).ForRun(runId);
        await store.SubscribeAsync(sessionId, null, subscriber, cancellationToken);
        try
        {
            var caller = CallerGrants.Of(context);
            var request = runBody! with
            {
                Messages = messages,
                RunId = runId,
                Owner = caller.Subject,
                Caller = caller,
                FallbackBudgetKey = "ip:" + context.Connection.RemoteIpAddress,
                Regenerate = trigger == "regenerate-message",
                // The SDK sends the conversation up to the answer it regenerates: its last user message is the question.
                RegenerateFrom = UiMessages.LastUserMessageId(input["messages"]),
            };
            var (_, error) = await runs.StartAsync(sessionId, request, cancellationToken);
            if (error is not null)
            {
                return error.ToResult();
            }

            // A request whose last message is the assistant's (it carries the client's tool results) continues that
            // message, as the SDK's own server does.
            var continued = input["messages"] is JsonArray { Count: > 0 } sent && sent[^1] is JsonObject last
                && last["role"] is JsonValue role && role.GetValueKind() == JsonValueKind.String && role.GetValue<string>() == "assistant"
                && last["id"] is JsonValue id && id.GetValueKind() == JsonValueKind.String ? id.GetValue<string>() : null;
            await StreamAsync(context, [], subscriber, ticker, logger, sessionId, continued);
        }
        finally
        {
            store.Unsubscribe(sessionId, subscriber);
        }

        return Results.Empty;
    }

    private static async Task<IResult> ResumeAsync(
        string sessionId, HttpContext context, ISessionStore store, IOptions<SessionsOptions> sessionOptions, WatchTicker ticker, ILogger<ChatStreamLog> logger)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } idError)
        {
            return idError.ToResult();
        }

        if (SessionAccess.Require(context, sessionId, SessionRights.Read) is { } denied)
        {
            return denied;
        }

        // Reads never create a session: a made-up id, or a session with nothing running, is answered from its info.
        if ((await store.InfoAsync(sessionId, context.RequestAborted)).GatewayRuns.Count == 0)
        {
            return Results.NoContent();
        }

        var options = sessionOptions.Value;
        var subscriber = new Subscriber(options.CoalesceThreshold, options.SubscriberHardLimit) { FollowsActiveRun = true };
        var first = await store.SubscribeAsync(sessionId, null, subscriber, context.RequestAborted);
        try
        {
            if (first.Run is null)
            {
                // The run ended meanwhile. Nothing in progress is what useChat's resume expects 204 for.
                return Results.NoContent();
            }

            await StreamAsync(context, first.Events, subscriber, ticker, logger, sessionId);
        }
        finally
        {
            store.Unsubscribe(sessionId, subscriber);
        }

        return Results.Empty;
    }

    private static async Task<IResult> StopAsync(string sessionId, HttpContext context, ISessionStore store, RunManager runs)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } idError)
        {
            return idError.ToResult();
        }

        if (SessionAccess.Require(context, sessionId, SessionRights.Write) is { } denied)
        {
            return denied;
        }

        // The runs the gateway runs: a RUN_STARTED someone published is nothing to stop.
        var active = (await store.InfoAsync(sessionId, context.RequestAborted)).GatewayRuns;
        var stopped = new List<RunCancelResult>();
        IResult? refused = null;
        foreach (var runId in active)
        {
            // The same rule as every other cancel: the run's starter, or an admin of the session. Runs the caller may
            // not stop are left alone; it is refused only when it may stop none of them.
            if (await SessionsEndpoints.CheckCancelAsync(context, sessionId, runId, runs) is { } denial)
            {
                refused ??= denial;
                continue;
            }

            if (await runs.CancelAsync(sessionId, runId, "requested") is { } outcome)
            {
                stopped.Add(new RunCancelResult(runId, outcome));
            }
        }

        if (stopped.Count == 0 && refused is not null)
        {
            return refused;
        }

        return stopped.Count == 0
            ? Results.NoContent()
            : TypedResults.Json(new ChatStopResult(sessionId, stopped), AiSdkJsonContext.Default.ChatStopResult);
    }

    /// <summary>Streams the run's events as UI message stream chunks until the run ends or the caller leaves.</summary>
    private static async Task StreamAsync(
        HttpContext context, IReadOnlyList<SessionEvent> first, Subscriber subscriber, WatchTicker ticker, ILogger logger, string sessionId, string? messageId = null)
    {
        var cancellationToken = context.RequestAborted;
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["x-vercel-ai-ui-message-stream"] = "v1";
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var writer = response.BodyWriter;
        using var stream = new UiMessageStream(messageId);
        // Comments while the model thinks, so proxies keep the response open; the ticker also ends it at shutdown.
        var heartbeats = ticker.AddHeartbeats(subscriber);
        using var registration = cancellationToken.Register(static s => ((Subscriber)s!).Close(), subscriber);
        try
        {
            await SessionEventStream.WriteAsync(writer, first, subscriber, stream.Write, cancellationToken);
            if (!stream.Ended && subscriber.CloseReason is { } reason && !cancellationToken.IsCancellationRequested)
            {
                // Fell too far behind, or the gateway is stopping: an explicit error, and the run can be resumed.
                Log.StreamEnded(logger, sessionId, reason);
                stream.Fail(writer, reason);
                await writer.FlushAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The caller left (or stopped reading); the run goes on for everyone else in the session.
        }
        finally
        {
            ticker.Remove(heartbeats);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "AI SDK chat stream of session {SessionId} ended before its run: {Reason}")]
        public static partial void StreamEnded(ILogger logger, string sessionId, string reason);
    }
}

/// <summary>The category of the AI SDK endpoints' log.</summary>
internal sealed class ChatStreamLog;

/// <summary>The answer of <c>POST /api/chat/{id}/stop</c>: the runs it cancelled and how each ended.</summary>
internal sealed record ChatStopResult(
    [property: System.Text.Json.Serialization.JsonPropertyName("sessionId")] string SessionId,
    [property: System.Text.Json.Serialization.JsonPropertyName("stopped")] IReadOnlyList<RunCancelResult> Stopped);

[System.Text.Json.Serialization.JsonSerializable(typeof(ChatStopResult))]
internal sealed partial class AiSdkJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
