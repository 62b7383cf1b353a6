using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Security;

/// <summary>
/// API keys in <c>X-Api-Key</c> or <c>Authorization: Bearer</c> (a bearer value that is not a JWT). Keys are compared
/// by their SHA-256, in constant time against every configured hash; the plain key is never stored or logged.
/// </summary>
internal sealed class ApiKeyAuthentication(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, ApiKeyTable table)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    /// <summary>The scheme's name.</summary>
    public const string SchemeName = "AiStreamApiKey";

    /// <summary>The header that carries a key.</summary>
    public const string Header = "X-Api-Key";

    /// <summary>Longest key considered; longer values fail without being hashed.</summary>
    private const int MaxKeyLength = 512;

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var key = PresentedKey(Request);
        if (key is null)
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        if (key.Length == 0 || key.Length > MaxKeyLength)
        {
            return Task.FromResult(AuthenticateResult.Fail("invalid API key"));
        }

        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        Func<ClaimsPrincipal>? match = null;
        foreach (var (expected, principal) in table.Keys)
        {
            // Every key is compared, so the time taken says nothing about which one (if any) matched.
            if (CryptographicOperations.FixedTimeEquals(hash, expected))
            {
                match = principal;
            }
        }

        return Task.FromResult(match is null
            ? AuthenticateResult.Fail("invalid API key")
            : AuthenticateResult.Success(new AuthenticationTicket(match(), SchemeName)));
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties) =>
        AuthProblem.ChallengeAsync(Context, "A valid API key or bearer token is required.", "invalid_api_key");

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) => AuthProblem.ForbidAsync(Context);

    /// <summary>The key a request presents: <c>X-Api-Key</c>, else a bearer value that is not a JWT; null when none.</summary>
    public static string? PresentedKey(HttpRequest request)
    {
        if (request.Headers.TryGetValue(Header, out var header))
        {
            return header.Count == 1 ? header[0] ?? "" : "";
        }

        return BearerValue(request) is { } bearer && !LooksLikeJwt(bearer) ? bearer : null;
    }

    /// <summary>The value of <c>Authorization: Bearer …</c>, if the request has one.</summary>
    public static string? BearerValue(HttpRequest request)
    {
        var authorization = request.Headers.Authorization;
        if (authorization.Count != 1 || authorization[0] is not { } value || !value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        return value["Bearer ".Length..].Trim();
    }

    /// <summary>A compact JWS has exactly two dots; API keys are generated without dots.</summary>
    public static bool LooksLikeJwt(string value) => value.Count(c => c == '.') == 2;
}

/// <summary>The configured API keys, decoded once: each hash with what a caller presenting it is granted.</summary>
internal sealed class ApiKeyTable(IOptions<AuthOptions> auth)
{
    public (byte[] Hash, Func<ClaimsPrincipal> Principal)[] Keys { get; } =
        [.. auth.Value.ApiKeys.Select(k => (Convert.FromHexString(k.Value.Hash), PrincipalOf(k.Key, k.Value)))];

    /// <summary>
    /// A new principal per request (a shared one could be changed by a claims transformation for everyone), from
    /// values computed once.
    /// </summary>
    private static Func<ClaimsPrincipal> PrincipalOf(string name, ApiKeyOptions key)
    {
        var rights = key.Scopes.Where(s => s != CallerGrants.CompletionsScope).ToArray();
        var capability = JsonSerializer.Serialize((key.Sessions.Length == 0 ? ["*"] : key.Sessions).Distinct().ToDictionary(p => p, _ => rights), SecurityJsonContext.Default.DictionaryStringStringArray);
        var scope = key.Scopes.Contains(CallerGrants.CompletionsScope) ? CallerGrants.CompletionsScope : "";
        return () => new ClaimsPrincipal(new ClaimsIdentity(
        [
            new Claim("sub", "key:" + name),
            new Claim("name", name),
            new Claim(CallerGrants.KeyClaim, name),
            new Claim("scope", scope),
            new Claim("sessions", capability, "JSON"),
        ], ApiKeyAuthentication.SchemeName, "sub", null));
    }
}
