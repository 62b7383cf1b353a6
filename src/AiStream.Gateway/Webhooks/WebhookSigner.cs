using System.Security.Cryptography;
using System.Text;

namespace AiStream.Gateway.Webhooks;

/// <summary>
/// Standard Webhooks signing: <c>v1,</c> and the base64 HMAC-SHA256, keyed with the secret's bytes, of
/// <c>"{webhook-id}.{webhook-timestamp}.{body}"</c>. A few lines of the framework's HMAC; no library is served here.
/// </summary>
internal static class WebhookSigner
{
    public const string SecretPrefix = "whsec_";

    public const int MinSecretBytes = 24;

    /// <summary>The key bytes of a <c>whsec_</c> secret, or null when it is not one.</summary>
    public static byte[]? ParseSecret(string? secret)
    {
        if (secret is null || !secret.StartsWith(SecretPrefix, StringComparison.Ordinal))
        {
            return null;
        }

        try
        {
            var key = Convert.FromBase64String(secret[SecretPrefix.Length..]);
            return key.Length >= MinSecretBytes ? key : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    public static string Sign(byte[] key, string id, long timestamp, string body)
    {
        var content = Encoding.UTF8.GetBytes($"{id}.{timestamp}.{body}");
        return "v1," + Convert.ToBase64String(HMACSHA256.HashData(key, content));
    }
}
