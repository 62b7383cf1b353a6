using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using AiStream.Gateway.Api;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Security;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Sessions;

/// <summary><c>/api/sessions/{id}</c>: session info, runs and backend publishing.</summary>
internal static partial class SessionsEndpoints
{
    public static IEndpointRouteBuilder MapSessions(this IEndpointRouteBuilder app)
    {
        var sessions = app.MapGroup("/api/sessions/{sessionId}").WithTags("Sessions");
        sessions.MapGet("/", InfoAsync);
        sessions.MapPost("/runs", StartRunAsync);
        sessions.MapPost("/runs/{runId}/cancel", CancelRunAsync);
        sessions.MapPost("/events", PublishAsync);
        return app;
    }

    /// <summary>
    /// A run's body, the same on every transport: <c>messages</c>, <c>model</c>, <c>tools</c>, and either
    /// <c>prompt</c> with <c>variables</c> (a template) or <c>agent</c>.
    /// </summary>
    public static (RunRequest? Request, ApiError? Error) RunBody(JsonObject run)
    {
        foreach (var name in (ReadOnlySpan<string>)["model", "prompt", "agent"])
        {
            if (run[name] is { } value && value.GetValueKind() != JsonValueKind.String)
            {
                return (null, ApiError.BadRequest($"'{name}' must be a string.", name));
            }
        }

        if (run["variables"] is { } variables && variables is not JsonObject)
        {
            return (null, ApiError.BadRequest("'variables' must be an object.", "variables"));
        }

        return (new RunRequest(run["messages"], (run["model"] as JsonValue)?.GetValue<string>(), (run["prompt"] as JsonValue)?.GetValue<string>(), Tools: run["tools"])
        {
            Variables = run["variables"] as JsonObject,
            Agent = (run["agent"] as JsonValue)?.GetValue<string>(),
        }, null);
    }

    /// <summary>
    /// The start of an endpoint that starts a run from a JSON body naming its session (AG-UI's <c>threadId</c>, the AI
    /// SDK's <c>id</c>): the body read within <paramref name="maxBytes"/>, a JSON object, a valid session id in
    /// <paramref name="idField"/>, and the caller's right to write the session (starting a run and streaming it back).
    /// </summary>
    public static async Task<(RunStart? Start, IResult? Error)> ReadRunStartAsync(
        HttpContext context, long maxBytes, string idField, string bodyName, CancellationToken cancellationToken)
    {
        var (node, parseError) = await ClientJson.ReadAsync(context.Request, maxBytes, cancellationToken);
        if (parseError is not null)
        {
            return (null, parseError.ToResult());
        }

        if (node is not JsonObject body)
        {
            return (null, ApiError.BadRequest($"{bodyName} must be a JSON object.").ToResult());
        }

        if (body[idField] is not JsonValue id || id.GetValueKind() != JsonValueKind.String)
        {
            return (null, ApiError.BadRequest($"'{idField}' (the session id) must be a string.", idField).ToResult());
        }

        var sessionId = id.GetValue<string>();
        if (CheckSessionId(sessionId) is { } idError)
        {
            return (null, (idError with { Param = idField }).ToResult());
        }

        return SessionAccess.Require(context, sessionId, SessionRights.Write) is { } denied ? (null, denied) : (new RunStart(body, sessionId), null);
    }

    /// <summary>Session ids are path segments and Redis key parts: letters, digits and <c>._:-</c>, up to 128.</summary>
    public static ApiError? CheckSessionId(string? sessionId) =>
        sessionId is not null && SessionIdPattern().IsMatch(sessionId) ? null
            : ApiError.BadRequest("A session id is 1 to 128 letters, digits or . _ : -", "sessionId", "invalid_session_id");

    private static async Task<IResult> InfoAsync(string sessionId, HttpContext context, ISessionStore store, CancellationToken cancellationToken) =>
        CheckSessionId(sessionId) is { } error ? error.ToResult()
            : SessionAccess.Require(context, sessionId, SessionRights.Read) is { } denied ? denied
            : TypedResults.Json(await store.InfoAsync(sessionId, cancellationToken), SessionsJsonContext.Default.SessionInfo);

    private static async Task<IResult> StartRunAsync(string sessionId, HttpRequest request, RunManager runs, CallerLimits limits, CancellationToken cancellationToken)
    {
        if (CheckSessionId(sessionId) is { } idError)
        {
            return idError.ToResult();
        }

        if (SessionAccess.Require(request.HttpContext, sessionId, SessionRights.Write) is { } denied)
        {
            return denied;
        }

        if (await limits.TryStartRunAsync(request.HttpContext, cancellationToken) is { } retryRun)
        {
            return LimitsHosting.TooMany(request.HttpContext, "Too many runs started (AiStream:Limits:RunsPerMinute).", "too_many_runs", retryRun);
        }

        var (body, parseError) = await ClientJson.ReadAsync(request, 1024 * 1024, cancellationToken);
        if (parseError is not null)
        {
            return parseError.ToResult();
        }

        if (body is not JsonObject run)
        {
            return ApiError.BadRequest("The body must be a JSON object.").ToResult();
        }

        var (runRequest, bodyError) = RunBody(run);
        if (bodyError is not null)
        {
            return bodyError.ToResult();
        }

        var (runId, error) = await runs.StartAsync(sessionId,
            runRequest! with
            {
                Owner = CallerGrants.Of(request.HttpContext).Subject,
                Caller = CallerGrants.Of(request.HttpContext),
                FallbackBudgetKey = "ip:" + request.HttpContext.Connection.RemoteIpAddress,
            },
            cancellationToken);
        return error is not null
            ? error.ToResult()
            : TypedResults.Json(new RunAccepted(runId!, sessionId), SessionsJsonContext.Default.RunAccepted, statusCode: StatusCodes.Status202Accepted);
    }

    private static async Task<IResult> CancelRunAsync(string sessionId, string runId, HttpContext context, RunManager runs)
    {
        if (CheckSessionId(sessionId) is { } idError)
        {
            return idError.ToResult();
        }

        if (await CheckCancelAsync(context, sessionId, runId, runs) is { } denied)
        {
            return denied;
        }

        var outcome = await runs.CancelAsync(sessionId, runId, "requested");
        return outcome is null
            ? new ApiError(StatusCodes.Status404NotFound, $"No active run '{runId}' in session '{sessionId}'.", "invalid_request_error", "run_not_found", "runId").ToResult()
            : TypedResults.Json(new RunCancelResult(runId, outcome), SessionsJsonContext.Default.RunCancelResult);
    }

    private static async Task<IResult> PublishAsync(
        string sessionId, HttpRequest request, ISessionStore store, IOptions<SessionsOptions> options, CallerLimits callerLimits, SessionLimitsHandler bounds,
        CancellationToken cancellationToken)
    {
        if (CheckSessionId(sessionId) is { } idError)
        {
            return idError.ToResult();
        }

        if (SessionAccess.Require(request.HttpContext, sessionId, SessionRights.Write) is { } denied)
        {
            return denied;
        }

        if (callerLimits.TryMessage(request.HttpContext) is { } retryMessage)
        {
            return LimitsHosting.TooMany(request.HttpContext, "Too many messages (AiStream:Limits:MessagesPerSecond).", "too_many_messages", retryMessage);
        }

        var limits = options.Value;
        var (body, parseError) = await ClientJson.ReadAsync(request, (long)limits.MaxEventBytes * Math.Min(limits.MaxPublishBatch, 64), cancellationToken);
        if (parseError is not null)
        {
            return parseError.ToResult();
        }

        var items = body is JsonArray array ? array.ToList() : [body];
        if (items.Count == 0 || items.Count > limits.MaxPublishBatch)
        {
            return ApiError.BadRequest($"Publish one event or a batch of 1 to {limits.MaxPublishBatch}.", "events").ToResult();
        }

        var events = new List<JsonObject>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            if (EventValidator.Validate(items[i], sessionId, out var e) is { } error)
            {
                return ApiError.BadRequest($"Event {i}: {error}.", items.Count == 1 ? "event" : $"events[{i}]", "invalid_event").ToResult();
            }

            if (e!.ToJsonString().Length > limits.MaxEventBytes)
            {
                return ApiError.BadRequest($"Event {i} is larger than {limits.MaxEventBytes} bytes.", $"events[{i}]", "event_too_large").ToResult();
            }

            if (e["type"]?.GetValue<string>() is AgUi.MessagesSnapshot or AgUi.StateSnapshot
                && SessionAccess.Require(request.HttpContext, sessionId, SessionRights.Admin) is { } snapshotDenied)
            {
                // A snapshot replaces the conversation or the shared state for everyone: admin only.
                return snapshotDenied;
            }

            events.Add(e);
        }

        var key = request.Headers["Idempotency-Key"].ToString();
        if (key.Length > 256)
        {
            return ApiError.BadRequest("Idempotency-Key is at most 256 characters.", "Idempotency-Key").ToResult();
        }

        AppendResult result;
        try
        {
            result = await store.AppendAsync(sessionId, events, null, key.Length == 0 ? null : key, cancellationToken);
        }
        catch (StateLimitExceededException ex)
        {
            return bounds.Answer(ex)!.ToResult();
        }

        return TypedResults.Json(new PublishResult(result.Seqs, result.Replayed), SessionsJsonContext.Default.PublishResult,
            statusCode: result.Replayed ? StatusCodes.Status200OK : StatusCodes.Status201Created);
    }

    /// <summary>
    /// Null when the caller may cancel the run: admin on the session, or write and it is the caller's own run. Otherwise
    /// the 403 (or, for a run that does not exist, nothing: the cancel answers 404 as before).
    /// </summary>
    public static async Task<IResult?> CheckCancelAsync(HttpContext context, string sessionId, string runId, RunManager runs) =>
        await CancelDenialAsync(CallerGrants.Of(context), sessionId, runId, runs) is { } denial ? SessionAccess.Forbidden(denial.Message, denial.Code) : null;

    /// <summary>
    /// Why the caller may not cancel the run, or null when it may: admin on the session, or write and it is the caller's
    /// own run (or one whose starter is unknown). The one rule behind the REST cancel and the hub's <c>CancelRun</c>.
    /// </summary>
    public static async Task<(string Code, string Message)?> CancelDenialAsync(CallerGrants caller, string sessionId, string runId, RunManager runs)
    {
        var rights = caller.RightsFor(sessionId);
        if (rights.HasFlag(SessionRights.Admin))
        {
            return null;
        }

        if (!rights.HasFlag(SessionRights.Write))
        {
            return ("session_forbidden", SessionAccess.Describe(SessionRights.Write));
        }

        var owner = await runs.OwnerOfAsync(sessionId, runId);
        return owner is null || owner == caller.Subject ? null
            : ("not_run_owner", "Only the member who started a run, or an admin of the session, may cancel it.");
    }

    [GeneratedRegex(@"^[A-Za-z0-9._:-]{1,128}\z")]
    private static partial Regex SessionIdPattern();
}

/// <summary>A checked request to start a run: its JSON body and the session it names.</summary>
internal readonly record struct RunStart(JsonObject Body, string SessionId);
