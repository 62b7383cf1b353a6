using System.Text.Json.Serialization;
using AiStream.Gateway.Api;

namespace AiStream.Gateway.Security;

/// <summary>
/// The 401 and 403 answers, written by authentication and the origin check before any endpoint runs: an
/// <see cref="ApiError"/> like every other error of the gateway.
/// </summary>
internal static class AuthProblem
{
    /// <summary>401 with <c>WWW-Authenticate: Bearer</c>.</summary>
    public static Task ChallengeAsync(HttpContext context, string message, string code, string? bearerError = null)
    {
        context.Response.Headers.WWWAuthenticate = bearerError is null ? "Bearer" : $"Bearer error=\"{bearerError}\"";
        return WriteAsync(context, StatusCodes.Status401Unauthorized, message, "authentication_error", code);
    }

    /// <summary>403: the credential is valid but lacks a right.</summary>
    public static Task ForbidAsync(HttpContext context, string message = "The credential does not grant this.", string code = "forbidden") =>
        WriteAsync(context, StatusCodes.Status403Forbidden, message, "permission_error", code);

    /// <summary>Writes a problem unless the response has started (then there is nothing left to say on it).</summary>
    public static async Task WriteAsync(HttpContext context, int status, string message, string type, string code)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        await new ApiError(status, message, type, code).ToResult().ExecuteAsync(context).ConfigureAwait(false);
    }
}

/// <summary>Source-generated serialization for the security feature.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Dictionary<string, string[]>))]
internal sealed partial class SecurityJsonContext : JsonSerializerContext;
