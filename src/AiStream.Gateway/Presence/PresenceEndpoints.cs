using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using AiStream.Gateway.Api;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Security;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Presence;

/// <summary><c>/api/sessions/{id}/presence</c>: who is here, and the state write side for SSE clients.</summary>
internal static class PresenceEndpoints
{
    public static IEndpointRouteBuilder MapPresence(this IEndpointRouteBuilder app)
    {
        var presence = app.MapGroup("/api/sessions/{sessionId}/presence").WithTags("Presence");
        presence.MapGet("/", List);
        presence.MapPost("/state", SetStateAsync);
        return app;
    }

    private static async Task<IResult> List(string sessionId, HttpContext context, IPresenceStore store, int? limit, CancellationToken cancellationToken)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } error)
        {
            return error.ToResult();
        }

        if (SessionAccess.Require(context, sessionId, SessionRights.Read) is { } denied)
        {
            return denied;
        }

        if (limit is < 1)
        {
            return ApiError.BadRequest("'limit' must be 1 or more.", "limit").ToResult();
        }

        var (members, total) = await store.ListAsync(sessionId, limit ?? 1000, cancellationToken);
        return TypedResults.Json(new PresenceList(sessionId, total, members), PresenceJsonContext.Default.PresenceList);
    }

    private static async Task<IResult> SetStateAsync(string sessionId, string? clientId, HttpRequest request, IPresenceStore store, CallerLimits limits, CancellationToken cancellationToken)
    {
        if (SessionsEndpoints.CheckSessionId(sessionId) is { } error)
        {
            return error.ToResult();
        }

        if (SessionAccess.Require(request.HttpContext, sessionId, SessionRights.Read) is { } denied)
        {
            return denied;
        }

        if (limits.TryMessage(request.HttpContext) is { } retry)
        {
            return LimitsHosting.TooMany(request.HttpContext, "Too many messages (AiStream:Limits:MessagesPerSecond).", "too_many_messages", retry);
        }

        // With authentication on, the member is the credential's subject: a caller sets only its own state.
        var caller = CallerGrants.Of(request.HttpContext);
        if (!caller.IsAnonymous)
        {
            clientId = caller.Subject;
        }
        else if (string.IsNullOrEmpty(clientId) || ClientIdentity.CheckIdentity(clientId, null) is not null)
        {
            return ApiError.BadRequest("'clientId' (query) must name the member whose state this is.", "clientId").ToResult();
        }

        var (body, parseError) = await ClientJson.ReadAsync(request, 64 * 1024, cancellationToken);
        if (parseError is not null)
        {
            return parseError.ToResult();
        }

        if (body is not JsonObject state)
        {
            return ApiError.BadRequest("The state must be a JSON object.", "state").ToResult();
        }

        return await store.SetStateAsync(sessionId, clientId!, state) switch
        {
            PresenceUpdate.Applied => TypedResults.NoContent(),
            PresenceUpdate.TooLarge => ApiError.BadRequest("The state is larger than AiStream:Presence:MaxStateBytes.", "state", "state_too_large").ToResult(),
            _ => new ApiError(StatusCodes.Status404NotFound, $"'{clientId}' is not present in session '{sessionId}'; watch the session first.",
                "invalid_request_error", "not_present", "clientId").ToResult(),
        };
    }
}

/// <summary>The answer of <c>GET /api/sessions/{id}/presence</c>.</summary>
internal sealed record PresenceList(
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("total")] int Total,
    [property: JsonPropertyName("members")] IReadOnlyList<JsonObject> Members);

/// <summary>Source-generated serialization for presence.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PresenceList))]
internal sealed partial class PresenceJsonContext : JsonSerializerContext;

/// <summary>Reads the identity a client supplies until authentication provides one.</summary>
internal static partial class ClientIdentity
{
    /// <summary>Checks a client-supplied identity; returns an error message or null.</summary>
    public static string? CheckIdentity(string? clientId, string? name) =>
        clientId is not null && !ClientIdPattern().IsMatch(clientId) ? "clientId is 1 to 128 letters, digits or . _ : @ -"
        : name is { Length: > 64 } ? "name is at most 64 characters"
        : null;

    /// <summary>Cookie that keeps an anonymous browser's id across EventSource reconnects and reloads.</summary>
    public const string CookieName = "aistream_cid";

    /// <summary>
    /// The identity from <c>clientId</c>, <c>name</c> and <c>color</c> query values. A client without <c>clientId</c>
    /// keeps the id in its <c>aistream_cid</c> cookie, or is given one (and the cookie), so an EventSource that
    /// reconnects by itself is the same member, not a leave and a join.
    /// </summary>
    public static (MemberIdentity? Identity, string? Error) FromRequest(HttpContext context)
    {
        var query = context.Request.Query;
        if (FromCaller(CallerGrants.Of(context), query["color"].ToString()) is { } authenticated)
        {
            return authenticated;
        }

        context.Request.Cookies.TryGetValue(CookieName, out var remembered);
        var (identity, error, generated) = FromValues(query["clientId"].ToString(), query["name"].ToString(), query["color"].ToString(), remembered);
        if (generated && !context.Response.HasStarted)
        {
            context.Response.Headers.Append("Set-Cookie", SetCookie(identity!.Id));
        }

        return (identity, error);
    }

    /// <summary>
    /// The checks of <see cref="FromRequest"/> on values already read (empty means absent); <c>Generated</c> says the
    /// id is new and the client should be given <see cref="SetCookie"/>.
    /// </summary>
    public static (MemberIdentity? Identity, string? Error, bool Generated) FromValues(string clientId, string name, string color, string? remembered)
    {
        if (clientId.Length == 0 && remembered is not null && CheckIdentity(remembered, null) is null)
        {
            clientId = remembered;
        }

        if (CheckIdentity(clientId.Length == 0 ? null : clientId, name) is { } error)
        {
            return (null, error, false);
        }

        if (color.Length > 32)
        {
            return (null, "color is at most 32 characters", false);
        }

        var generated = clientId.Length == 0;
        var id = generated ? "anon-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6)) : clientId;
        return (new MemberIdentity(id, name.Length > 0 ? name : id, color.Length > 0 ? color : null), null, generated);
    }

    /// <summary>
    /// With authentication on, the identity is the credential's: the member id is its <c>sub</c> and the name its
    /// <c>name</c>; <c>clientId</c> only tells a member's tabs apart and cannot make the caller appear as someone else.
    /// Null when the caller is anonymous (authentication off).
    /// </summary>
    public static (MemberIdentity? Identity, string? Error)? FromCaller(CallerGrants caller, string color)
    {
        if (caller.IsAnonymous)
        {
            return null;
        }

        if (color.Length > 32)
        {
            return (null, "color is at most 32 characters");
        }

        var name = caller.Name is { Length: > 0 and <= 64 } n ? n : caller.Subject!;
        return (new MemberIdentity(caller.Subject!, name, color.Length > 0 ? color : null, caller.KeyName is null ? "user" : "service"), null);
    }

    /// <summary>The <c>Set-Cookie</c> value that keeps a generated id (HttpOnly, SameSite=Lax, whole site).</summary>
    public static string SetCookie(string id) => CookieName + "=" + id + "; path=/; samesite=lax; httponly";

    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z0-9._:@-]{1,128}\z")]
    private static partial System.Text.RegularExpressions.Regex ClientIdPattern();
}
