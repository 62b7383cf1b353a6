using System.Buffers.Text;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using AiStream.LoadTest.Cli;
using AiStream.LoadTest.Results;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// Authentication of a run (<c>--auth on</c>, the default): a random HS256 secret the tool gives the gateway (and the
/// floor) it starts as <c>AiStream:Auth:Jwt:SigningKey</c>, and one JWT minted with it that every client of the run
/// sends as <c>Authorization: Bearer</c>. A gateway that does not check tokens ignores the header, so a run works
/// either way.
/// </summary>
/// <remarks>
/// One token for every watcher (<c>sub</c> "loadtest", as their <c>?clientId=loadtest</c>): with auth on the gateway
/// takes the presence member from <c>sub</c>, and one member per watcher would append a presence join per watcher to
/// the session log, which the memory and fan-out figures would then include.
/// </remarks>
internal sealed class LoadAuth
{
    /// <summary>The gateway's configuration key of the HS256 secret.</summary>
    public const string SigningKeySetting = "AiStream:Auth:Jwt:SigningKey";

    private const string SecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    private LoadAuth(string? signingKey)
    {
        SigningKey = signingKey;
        Token = signingKey is null ? null : Mint(signingKey, "loadtest", "loadtest", DateTimeOffset.UtcNow, TimeSpan.FromHours(2));
    }

    /// <summary>No secret and no token: requests carry no <c>Authorization</c> header.</summary>
    public static LoadAuth Off { get; } = new(null);

    /// <summary>The secret the servers the tool starts are given, or null with auth off.</summary>
    public string? SigningKey { get; }

    /// <summary>The bearer token every client sends, or null with auth off.</summary>
    public string? Token { get; }

    /// <summary>
    /// The run's authentication from <c>--auth</c>: a fresh 48-character secret when the tool starts the gateway; with
    /// <c>--url</c>, the gateway's own secret from <c>--signing-key</c>, else no token. Recorded in the results.
    /// </summary>
    public static LoadAuth From(ScenarioSettings settings, ScenarioResult result)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(result);
        if (!settings.AuthOn)
        {
            result.Settings["auth"] = "off";
            result.Notes.Add("--auth off: the gateway is started without a signing key and requests carry no token");
            return Off;
        }

        if (settings.Url is not null && settings.SigningKey is null)
        {
            result.Settings["auth"] = "off (--url without --signing-key)";
            result.Notes.Add("with --url and no --signing-key the tool cannot mint tokens the gateway accepts; requests carry no token");
            return Off;
        }

        result.Settings["auth"] = "on";
        result.Notes.Add("auth on: every request carries Authorization: Bearer <HS256 JWT, sub loadtest, scope \"completions admin\", sessions {\"*\":[read,write,admin]}>"
            + (settings.Url is null ? ", minted with a random secret the tool gives the gateway it starts (AiStream__Auth__Jwt__SigningKey)" : ", minted with --signing-key"));
        return new LoadAuth(settings.SigningKey ?? RandomNumberGenerator.GetString(SecretAlphabet, 48));
    }

    /// <summary><paramref name="settings"/> plus the signing key (when auth is on), for a server the tool starts.</summary>
    public Dictionary<string, string> ServerSettings(IReadOnlyDictionary<string, string>? settings = null)
    {
        var all = settings is null ? new Dictionary<string, string>() : new Dictionary<string, string>(settings);
        // Every load client is one user on one address: the per-caller message rate (on by default) would measure the
        // limiter, not the delivery. The connection and run limits are off by default already.
        all.TryAdd("AiStream__Limits__MessagesPerSecond", "0");
        if (SigningKey is not null)
        {
            all[SigningKeySetting] = SigningKey;
        }

        return all;
    }

    /// <summary>Sets the bearer token on <paramref name="request"/> unless auth is off or it already has one.</summary>
    public void Authorize(HttpRequestMessage request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (Token is not null && request.Headers.Authorization is null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        }
    }

    /// <summary>
    /// An HS256 JWT: base64url header and payload, signed with HMAC-SHA256. Written by hand (a dozen lines) so the
    /// tool needs no token library; the gateway validates it with JwtBearer.
    /// </summary>
    public static string Mint(string signingKey, string subject, string name, DateTimeOffset now, TimeSpan lifetime)
    {
        var header = Base64Url.EncodeToString("""{"alg":"HS256","typ":"JWT"}"""u8);
        using var payload = new MemoryStream();
        using (var json = new Utf8JsonWriter(payload))
        {
            json.WriteStartObject();
            json.WriteString("sub", subject);
            json.WriteString("name", name);
            json.WriteNumber("iat", now.ToUnixTimeSeconds());
            json.WriteNumber("exp", (now + lifetime).ToUnixTimeSeconds());
            json.WriteString("scope", "completions admin");
            json.WriteStartObject("sessions");
            json.WriteStartArray("*");
            json.WriteStringValue("read");
            json.WriteStringValue("write");
            json.WriteStringValue("admin");
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }

        var signingInput = header + "." + Base64Url.EncodeToString(payload.ToArray());
        var signature = HMACSHA256.HashData(Encoding.UTF8.GetBytes(signingKey), Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + Base64Url.EncodeToString(signature);
    }

    /// <summary>Adds the run's bearer token to every request a client sends (watches, publishes, completions).</summary>
    internal sealed class BearerHandler(LoadAuth auth, HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            auth.Authorize(request);
            return base.SendAsync(request, cancellationToken);
        }

        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            auth.Authorize(request);
            return base.Send(request, cancellationToken);
        }
    }
}
