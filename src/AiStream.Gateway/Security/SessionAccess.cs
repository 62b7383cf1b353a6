using AiStream.Gateway.Api;

namespace AiStream.Gateway.Security;

/// <summary>The per-session rights check every endpoint and hub method makes before touching a session.</summary>
internal static class SessionAccess
{
    /// <summary>Null when the caller holds <paramref name="needed"/> on the session, else the 403 to answer.</summary>
    public static IResult? Require(HttpContext context, string sessionId, SessionRights needed) =>
        CallerGrants.Of(context).Has(sessionId, needed) ? null : Forbidden(Describe(needed), "session_forbidden");

    /// <summary>What a missing right is called in answers (never whether the session exists).</summary>
    public static string Describe(SessionRights needed) =>
        $"The credential does not grant {(needed.HasFlag(SessionRights.Admin) ? "admin" : needed.HasFlag(SessionRights.Write) ? "write" : "read")} on this session.";

    /// <summary>A 403 problem as an endpoint result.</summary>
    public static IResult Forbidden(string message, string code)
    {
        return new ApiError(StatusCodes.Status403Forbidden, message, "permission_error", code).ToResult();
    }
}
