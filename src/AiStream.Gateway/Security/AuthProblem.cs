using System.Text.Json.Serialization;

namespace AiStream.Gateway.Security;

/// <summary>
/// The 401 and 403 answers: problem details with OpenAI's <c>error</c> object beside them, the same shape as every
/// other error of the gateway (written here because authentication answers before any feature's endpoint runs).
/// </summary>
internal static class AuthProblem
{
    /// <summary>401 with <c>WWW-Authenticate: Bearer</c>.</summary>
    public static Task ChallengeAsync(HttpContext context, string message, string code, string? bearerError = null)
    {
        context.Response.Headers.WWWAuthenticate = bearerError is null ? "Bearer" : $"Bearer error=\"{bearerError}\"";
        return WriteAsync(context, StatusCodes.Status401Unauthorized, "Unauthorized", message, "authentication_error", code);
    }

    /// <summary>403: the credential is valid but lacks a right.</summary>
    public static Task ForbidAsync(HttpContext context, string message = "The credential does not grant this.", string code = "forbidden") =>
        WriteAsync(context, StatusCodes.Status403Forbidden, "Forbidden", message, "permission_error", code);

    /// <summary>Writes a problem unless the response has started (then there is nothing left to say on it).</summary>
    public static async Task WriteAsync(HttpContext context, int status, string title, string message, string type, string code)
    {
        if (context.Response.HasStarted)
        {
            return;
        }

        context.Response.StatusCode = status;
        context.Response.ContentType = "application/problem+json";
        var body = new AuthProblemBody($"https://aistream.dev/errors/{code}", title, status, message, new AuthErrorObject(message, type, code));
        await System.Text.Json.JsonSerializer.SerializeAsync(context.Response.Body, body, SecurityJsonContext.Default.AuthProblemBody, context.RequestAborted);
    }
}

/// <summary>OpenAI's error object.</summary>
internal sealed record AuthErrorObject(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("code")] string Code);

/// <summary>Problem details with OpenAI's error object.</summary>
internal sealed record AuthProblemBody(
    [property: JsonPropertyName("type")] string ProblemType,
    [property: JsonPropertyName("title")] string Title,
    [property: JsonPropertyName("status")] int Status,
    [property: JsonPropertyName("detail")] string Detail,
    [property: JsonPropertyName("error")] AuthErrorObject Error);

/// <summary>Source-generated serialization for the security feature.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(AuthProblemBody))]
[JsonSerializable(typeof(Dictionary<string, string[]>))]
internal sealed partial class SecurityJsonContext : JsonSerializerContext;
