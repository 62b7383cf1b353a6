using System.Globalization;
using System.Security.Claims;
using System.Text.Json;

namespace AiStream.Gateway.Security;

/// <summary>Rights on one session. Each includes the ones below it: admin ⊃ write ⊃ read.</summary>
[Flags]
internal enum SessionRights
{
    None = 0,

    /// <summary>Watch, catch up, see presence, set one's own presence state.</summary>
    Read = 1,

    /// <summary>Start runs, cancel one's own runs, publish events.</summary>
    Write = 2,

    /// <summary>Cancel anyone's run, publish snapshots that replace the session's messages or state.</summary>
    Admin = 4,
}

/// <summary>
/// What the caller may do, read once per request (or hub connection) from its credential: the <c>sessions</c>
/// capability (session-id pattern → rights), the <c>scope</c> (<c>completions</c>, <c>admin</c>), and who it is
/// (<c>sub</c>, <c>name</c>). With authentication off every caller is <see cref="Anonymous"/>, with every right.
/// </summary>
internal sealed class CallerGrants
{
    /// <summary>The scope that allows <c>/v1/chat/completions</c> and <c>/v1/models</c>.</summary>
    public const string CompletionsScope = "completions";

    /// <summary>The scope that gives admin on every session.</summary>
    public const string AdminScope = "admin";

    /// <summary>Claim naming the API key a principal authenticated with.</summary>
    public const string KeyClaim = "aistream:key";

    /// <summary>Most entries of a <c>sessions</c> claim that are read; the rest are ignored.</summary>
    private const int MaxPatterns = 256;

    private readonly (string Pattern, SessionRights Rights)[] _sessions;

    private CallerGrants(string? subject, string? name, string? keyName, (string, SessionRights)[] sessions, bool completions, bool admin, DateTimeOffset? expiresAt)
    {
        Subject = subject;
        Name = name;
        KeyName = keyName;
        _sessions = sessions;
        Completions = completions;
        Admin = admin;
        ExpiresAt = expiresAt;
    }

    /// <summary>The caller when authentication is off: nobody in particular, allowed everything.</summary>
    public static CallerGrants Anonymous { get; } = new(null, null, null, [], completions: true, admin: true, null);

    /// <summary>The member id (<c>sub</c>, or <c>key:&lt;name&gt;</c> for an API key); null when anonymous.</summary>
    public string? Subject { get; }

    /// <summary>The display name (<c>name</c> claim), if any.</summary>
    public string? Name { get; }

    /// <summary>The API key's configured name, when the caller used one.</summary>
    public string? KeyName { get; }

    /// <summary>Whether authentication is off for this caller (no credential, every right).</summary>
    public bool IsAnonymous => Subject is null;

    /// <summary>May call <c>/v1</c>.</summary>
    public bool Completions { get; }

    /// <summary>Admin on every session (the <c>admin</c> scope).</summary>
    public bool Admin { get; }

    /// <summary>When the credential stops being valid (<c>exp</c>), if it does.</summary>
    public DateTimeOffset? ExpiresAt { get; }

    /// <summary>The key limits are counted under: the member, the API key, or (anonymous) null for the caller's address.</summary>
    public string? LimitKey => KeyName is { } key ? "key:" + key : Subject is { } sub ? "user:" + sub : null;

    /// <summary>The caller's rights on <paramref name="sessionId"/>: the union of every matching pattern's.</summary>
    public SessionRights RightsFor(string sessionId)
    {
        if (Admin)
        {
            return SessionRights.Read | SessionRights.Write | SessionRights.Admin;
        }

        var rights = SessionRights.None;
        foreach (var (pattern, granted) in _sessions)
        {
            if (SessionPattern.Matches(pattern, sessionId))
            {
                rights |= granted;
            }
        }

        return rights;
    }

    /// <summary>Whether the caller holds <paramref name="needed"/> on <paramref name="sessionId"/>.</summary>
    public bool Has(string sessionId, SessionRights needed) => (RightsFor(sessionId) & needed) == needed;

    /// <summary>The caller of this request, read from its principal once and kept on the request.</summary>
    public static CallerGrants Of(HttpContext context)
    {
        if (context.Features.Get<CallerGrants>() is { } known)
        {
            return known;
        }

        var grants = From(context.User);
        context.Features.Set(grants);
        return grants;
    }

    /// <summary>Reads the grants of an authenticated principal; an unauthenticated one gets nothing.</summary>
    public static CallerGrants From(ClaimsPrincipal user)
    {
        if (user.Identity is not { IsAuthenticated: true })
        {
            return new CallerGrants("", null, null, [], false, false, null);
        }

        if (user.HasClaim(AnonymousAuthentication.AnonymousClaim, "true"))
        {
            return Anonymous;
        }

        var subject = user.FindFirst("sub")?.Value;
        var keyName = user.FindFirst(KeyClaim)?.Value;
        var scopes = (user.FindFirst("scope")?.Value ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var sessions = new List<(string, SessionRights)>();
        foreach (var claim in user.FindAll("sessions"))
        {
            ReadCapability(claim.Value, sessions);
        }

        DateTimeOffset? expires = long.TryParse(user.FindFirst("exp")?.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var exp)
            ? DateTimeOffset.FromUnixTimeSeconds(Math.Min(exp, 253_402_300_799))
            : null;
        return new CallerGrants(
            string.IsNullOrEmpty(subject) ? "" : subject,
            user.FindFirst("name")?.Value,
            keyName,
            [.. sessions],
            scopes.Contains(CompletionsScope, StringComparer.Ordinal),
            scopes.Contains(AdminScope, StringComparer.Ordinal),
            expires);
    }

    /// <summary>Parses a right's name (read, write, admin) with the rights it includes.</summary>
    public static bool TryParseRight(string name, out SessionRights rights)
    {
        rights = name switch
        {
            "read" => SessionRights.Read,
            "write" => SessionRights.Read | SessionRights.Write,
            "admin" => SessionRights.Read | SessionRights.Write | SessionRights.Admin,
            _ => SessionRights.None,
        };
        return rights != SessionRights.None;
    }

    /// <summary>
    /// Reads a <c>sessions</c> capability, <c>{"pattern": ["read", ...]}</c>. A malformed one grants nothing rather than
    /// failing the request: it is the token issuer's mistake, and denying is the safe reading.
    /// </summary>
    private static void ReadCapability(string json, List<(string, SessionRights)> into)
    {
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 4 });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return;
            }

            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (into.Count >= MaxPatterns)
                {
                    return;
                }

                if (!SessionPattern.IsValid(entry.Name) || entry.Value.ValueKind != JsonValueKind.Array)
                {
                    continue;
                }

                var rights = SessionRights.None;
                foreach (var right in entry.Value.EnumerateArray())
                {
                    if (right.ValueKind == JsonValueKind.String && TryParseRight(right.GetString()!, out var parsed))
                    {
                        rights |= parsed;
                    }
                }

                if (rights != SessionRights.None)
                {
                    into.Add((entry.Name, rights));
                }
            }
        }
        catch (JsonException)
        {
            // Grants nothing.
        }
    }
}
