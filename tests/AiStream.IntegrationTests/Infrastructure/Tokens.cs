using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>
/// Mints compact JWTs by hand (HS256, or deliberately broken ones) so tests control every byte a client could send.
/// </summary>
internal static class Tokens
{
    /// <summary>The signing key the security tests configure (48 bytes).</summary>
    public const string Key = "test-signing-key-0123456789-abcdefghijklmnopqrst";

    /// <summary>Settings that turn authentication on with <see cref="Key"/>.</summary>
    public static Dictionary<string, string?> AuthOn(Dictionary<string, string?>? settings = null, string? audience = null)
    {
        var result = settings ?? [];
        result["AiStream:Auth:Jwt:SigningKey"] = Key;
        if (audience is not null)
        {
            result["AiStream:Auth:Jwt:Audience"] = audience;
        }

        return result;
    }

    /// <summary>A token for <paramref name="sub"/> with a <c>sessions</c> capability and a <c>scope</c>.</summary>
    public static string Mint(
        string sub,
        JsonObject? sessions = null,
        string? scope = null,
        TimeSpan? lifetime = null,
        string key = Key,
        string? audience = null,
        string? issuer = null,
        string? name = null,
        string alg = "HS256")
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var exp = now + (long)(lifetime ?? TimeSpan.FromHours(1)).TotalSeconds;
        var issued = Math.Min(now, exp - 600); // an expired token was issued before it expired
        var payload = new JsonObject
        {
            ["sub"] = sub,
            ["iat"] = issued,
            ["nbf"] = issued,
            ["exp"] = exp,
        };
        if (name is not null)
        {
            payload["name"] = name;
        }

        if (sessions is not null)
        {
            payload["sessions"] = sessions;
        }

        if (scope is not null)
        {
            payload["scope"] = scope;
        }

        if (audience is not null)
        {
            payload["aud"] = audience;
        }

        if (issuer is not null)
        {
            payload["iss"] = issuer;
        }

        return Sign(new JsonObject { ["alg"] = alg, ["typ"] = "JWT" }, payload, key);
    }

    /// <summary>Signs header.payload with HS256 (or leaves the signature empty for <c>alg: none</c>).</summary>
    public static string Sign(JsonObject header, JsonObject payload, string key)
    {
        var signingInput = B64(Encoding.UTF8.GetBytes(header.ToJsonString())) + "." + B64(Encoding.UTF8.GetBytes(payload.ToJsonString()));
        if (header["alg"]?.GetValue<string>() == "none")
        {
            return signingInput + ".";
        }

        var signature = HMACSHA256.HashData(Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(signingInput));
        return signingInput + "." + B64(signature);
    }

    /// <summary>A capability: pattern → rights.</summary>
    public static JsonObject Grants(params (string Pattern, string[] Rights)[] grants)
    {
        var result = new JsonObject();
        foreach (var (pattern, rights) in grants)
        {
            result[pattern] = new JsonArray([.. rights.Select(r => (JsonNode)JsonValue.Create(r)!)]);
        }

        return result;
    }

    /// <summary>An HttpClient that sends <paramref name="token"/> as a bearer token.</summary>
    public static HttpClient WithBearer(this HttpClient client, string? token)
    {
        client.DefaultRequestHeaders.Authorization = token is null ? null : new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>The lowercase hex SHA-256 an API key is configured by.</summary>
    public static string Hash(string apiKey) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(apiKey)));

    private static string B64(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
