using System.ComponentModel.DataAnnotations;
using System.Text;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Security;

/// <summary>
/// The <c>AiStream:Auth</c> section. Authentication is off only when nothing here is configured (the embedded
/// default); a signing key, an authority or any API key turns it on for every endpoint except <c>/healthz</c> and
/// <c>/readyz</c>.
/// </summary>
public sealed class AuthOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Auth";

    /// <summary>JWT bearer tokens (HS256 shared secret or OIDC authority).</summary>
    public JwtOptions Jwt { get; set; } = new();

    /// <summary>API keys for backend publishers and server-to-server callers, by name.</summary>
    public Dictionary<string, ApiKeyOptions> ApiKeys { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Whether any credential is configured, which turns authentication on.</summary>
    public bool Enabled => Jwt.Configured || ApiKeys.Count > 0;
}

/// <summary>The <c>AiStream:Auth:Jwt</c> section.</summary>
public sealed class JwtOptions
{
    /// <summary>HS256 shared secret, at least 32 bytes of UTF-8. Either this or <see cref="Authority"/>.</summary>
    public string? SigningKey { get; set; }

    /// <summary>OIDC authority whose discovery document and JWKS sign the tokens. Either this or <see cref="SigningKey"/>.</summary>
    public string? Authority { get; set; }

    /// <summary>Expected <c>iss</c>; checked when set.</summary>
    public string? Issuer { get; set; }

    /// <summary>Expected <c>aud</c>; checked when set.</summary>
    public string? Audience { get; set; }

    /// <summary>Clock skew allowed on <c>exp</c> and <c>nbf</c>, in seconds. Default 30 (not JwtBearer's 5 minutes).</summary>
    [Range(0, 600)]
    public int ClockSkewSeconds { get; set; } = 30;

    /// <summary>Whether the authority's metadata must be fetched over HTTPS. Default true.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    internal bool Configured => !string.IsNullOrEmpty(SigningKey) || !string.IsNullOrEmpty(Authority);
}

/// <summary>One API key: <c>AiStream:Auth:ApiKeys:&lt;name&gt;</c>.</summary>
public sealed class ApiKeyOptions
{
    /// <summary>Lowercase hex SHA-256 of the key; the plain key is never stored.</summary>
    public string Hash { get; set; } = "";

    /// <summary>Rights on every session pattern of <see cref="Sessions"/>: read, write, admin; and completions.</summary>
    public string[] Scopes { get; set; } = [];

    /// <summary>
    /// Session-id patterns the scopes apply to (<c>*</c> matches any run of characters). Empty (default) means <c>*</c>;
    /// the default is not put in the array, because configuration binding appends to an array instead of replacing it.
    /// </summary>
    public string[] Sessions { get; set; } = [];

    /// <summary>This key's daily token budget, overriding <c>AiStream:Limits:DailyTokens</c>; 0 means the default.</summary>
    [Range(0, long.MaxValue)]
    public long DailyTokens { get; set; }
}

/// <summary>Checks the auth section at start, one clear message per problem.</summary>
internal sealed class AuthOptionsValidator : IValidateOptions<AuthOptions>
{
    public ValidateOptionsResult Validate(string? name, AuthOptions options)
    {
        var errors = new List<string>();
        var jwt = options.Jwt;
        if (!string.IsNullOrEmpty(jwt.SigningKey) && !string.IsNullOrEmpty(jwt.Authority))
        {
            errors.Add("AiStream:Auth:Jwt: set SigningKey or Authority, not both.");
        }

        if (!string.IsNullOrEmpty(jwt.SigningKey) && Encoding.UTF8.GetByteCount(jwt.SigningKey) < 32)
        {
            errors.Add("AiStream:Auth:Jwt:SigningKey must be at least 32 bytes of UTF-8 (HS256).");
        }

        if (!string.IsNullOrEmpty(jwt.Authority) && !Uri.TryCreate(jwt.Authority, UriKind.Absolute, out _))
        {
            errors.Add("AiStream:Auth:Jwt:Authority must be an absolute URL.");
        }

        if (jwt.ClockSkewSeconds is < 0 or > 600)
        {
            errors.Add("AiStream:Auth:Jwt:ClockSkewSeconds must be between 0 and 600.");
        }

        foreach (var (keyName, key) in options.ApiKeys)
        {
            var prefix = $"AiStream:Auth:ApiKeys:{keyName}";
            if (key.Hash.Length != 64 || !key.Hash.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
            {
                errors.Add($"{prefix}:Hash must be the lowercase hex SHA-256 of the key (64 characters), e.g. printf %s \"$KEY\" | sha256sum.");
            }

            foreach (var scope in key.Scopes)
            {
                if (!CallerGrants.TryParseRight(scope, out _) && scope != CallerGrants.CompletionsScope)
                {
                    errors.Add($"{prefix}:Scopes: '{scope}' is not one of read, write, admin, completions.");
                }
            }

            foreach (var pattern in key.Sessions)
            {
                if (!SessionPattern.IsValid(pattern))
                {
                    errors.Add($"{prefix}:Sessions: '{pattern}' is not a session-id pattern (letters, digits, . _ : - and *; up to 256).");
                }
            }

            if (key.DailyTokens < 0)
            {
                errors.Add($"{prefix}:DailyTokens must be 0 (the default budget) or more.");
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
