using AiStream.Gateway.Completions;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.SignalR;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// The session bounds as answers wherever they are hit (publish, runs, watches, <c>/agui</c>): a batch past the state
/// limits is the client's 400; a node at its session maximum is a 503 with Retry-After. Never a 500.
/// </summary>
internal sealed class SessionLimitsHandler : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (ToError(exception) is not { } error || httpContext.Response.HasStarted)
        {
            return false;
        }

        await error.ToResult().ExecuteAsync(httpContext).ConfigureAwait(false);
        return true;
    }

    /// <summary>The answer for a session bound, or null for any other exception.</summary>
    public static ApiError? ToError(Exception exception) => exception switch
    {
        StateLimitExceededException state => ApiError.BadRequest($"Not stored: {state.Message}.", "events", "state_limit"),
        SessionLimitExceededException sessions => new ApiError(StatusCodes.Status503ServiceUnavailable, sessions.Message, "service_unavailable", "too_many_sessions")
        {
            RetryAfter = TimeSpan.FromSeconds(5),
        },
        _ => null,
    };
}

/// <summary>The same bounds for hub calls: a HubException with the reason instead of a generic error.</summary>
internal sealed class SessionLimitsHubFilter : IHubFilter
{
    public async ValueTask<object?> InvokeMethodAsync(HubInvocationContext invocationContext, Func<HubInvocationContext, ValueTask<object?>> next)
    {
        try
        {
            return await next(invocationContext).ConfigureAwait(false);
        }
        catch (Exception ex) when (SessionLimitsHandler.ToError(ex) is { } error)
        {
            throw new HubException(error.Message);
        }
    }
}
