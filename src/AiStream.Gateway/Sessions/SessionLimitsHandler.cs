using AiStream.Gateway.Api;
using AiStream.Gateway.Limits;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.SignalR;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// The session bounds as answers wherever they are hit (publish, runs, watches, joins, <c>/agui</c>): a batch past the
/// state limits is the client's 400; a node at its session maximum is a 503 and a session at its member maximum a 429,
/// both with Retry-After. Never a 500. Each answer is counted in <c>aistream.limits.refused</c>.
/// </summary>
internal sealed class SessionLimitsHandler(LimitsMetrics metrics) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (httpContext.Response.HasStarted || Answer(exception) is not { } error)
        {
            return false;
        }

        await error.ToResult().ExecuteAsync(httpContext).ConfigureAwait(false);
        return true;
    }

    /// <summary>The answer for a session bound, counted, or null for any other exception.</summary>
    public ApiError? Answer(Exception exception)
    {
        if (Classify(exception) is not { } bound)
        {
            return null;
        }

        metrics.Refused(bound.Limit);
        return bound.Error;
    }

    private static (ApiError Error, string Limit)? Classify(Exception exception) => exception switch
    {
        StateLimitExceededException state => (ApiError.BadRequest($"Not stored: {state.Message}.", "events", "state_limit"), "session_state"),
        SessionLimitExceededException sessions => (new ApiError(StatusCodes.Status503ServiceUnavailable, sessions.Message, "service_unavailable", "too_many_sessions")
        {
            RetryAfter = TimeSpan.FromSeconds(5),
        }, "sessions_per_node"),
        MemberLimitExceededException members => (new ApiError(StatusCodes.Status429TooManyRequests, members.Message, "rate_limit_error", "too_many_members")
        {
            RetryAfter = TimeSpan.FromSeconds(5),
        }, "members_per_session"),
        _ => null,
    };
}

/// <summary>The same bounds for hub calls: a HubException with the reason instead of a generic error.</summary>
internal sealed class SessionLimitsHubFilter(SessionLimitsHandler limits) : IHubFilter
{
    public async ValueTask<object?> InvokeMethodAsync(HubInvocationContext invocationContext, Func<HubInvocationContext, ValueTask<object?>> next)
    {
        try
        {
            return await next(invocationContext).ConfigureAwait(false);
        }
        catch (Exception ex) when (limits.Answer(ex) is { } error)
        {
            throw new HubException(error.Message);
        }
    }
}
