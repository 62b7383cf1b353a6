using System.Text.Json.Serialization;

namespace AiStream.Gateway.Api;

/// <summary>OpenAI's error object: what OpenAI SDKs read from an error body.</summary>
internal sealed record OpenAIErrorObject(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);

/// <summary>
/// An error body that is both RFC 9457 problem details and OpenAI-shaped: problem fields at the top,
/// OpenAI's <c>error</c> object beside them, so problem-aware clients and OpenAI SDKs both read it.
/// </summary>
internal sealed record ApiErrorBody(
    [property: JsonPropertyName("type")] string ProblemType,
    [property: JsonPropertyName("title")] string Title,
    [property: JsonPropertyName("status")] int Status,
    [property: JsonPropertyName("detail")] string Detail,
    [property: JsonPropertyName("error")] OpenAIErrorObject Error);

/// <summary>A mid-stream error event: a <c>data:</c> chunk whose JSON has an <c>error</c> object, as OpenAI sends.</summary>
internal sealed record StreamErrorBody([property: JsonPropertyName("error")] OpenAIErrorObject Error);

/// <summary>A client-facing failure with its status and OpenAI error fields.</summary>
internal sealed record ApiError(int Status, string Message, string Type, string? Code = null, string? Param = null)
{
    public static ApiError BadRequest(string message, string? param = null, string code = "invalid_request") =>
        new(StatusCodes.Status400BadRequest, message, "invalid_request_error", code, param);

    public static ApiError ModelNotFound(string model) =>
        new(StatusCodes.Status404NotFound, $"The model '{model}' does not exist. GET /v1/models lists the configured models.", "invalid_request_error", "model_not_found", "model");

    public ApiErrorBody ToBody() => new(
        $"https://aistream.dev/errors/{Code ?? Type}",
        Title(Status),
        Status,
        Message,
        new OpenAIErrorObject(Message, Type, Param, Code));

    /// <summary>When the client may retry (a <c>Retry-After</c> header on the answer), if it should wait.</summary>
    public TimeSpan? RetryAfter { get; init; }

    public IResult ToResult()
    {
        var result = TypedResults.Json(ToBody(), ApiJsonContext.Default.ApiErrorBody, "application/problem+json", Status);
        return RetryAfter is { } wait ? new RetryAfterResult(result, wait) : result;
    }

    /// <summary>Adds Retry-After (whole seconds, at least 1) to an error result.</summary>
    private sealed class RetryAfterResult(IResult inner, TimeSpan retryAfter) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return inner.ExecuteAsync(httpContext);
        }
    }

    private static string Title(int status) => status switch
    {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        409 => "Conflict",
        413 => "Request body too large",
        429 => "Too many requests",
        502 => "Upstream failed",
        503 => "Service unavailable",
        504 => "Upstream timed out",
        _ => "Error",
    };
}

/// <summary>Source-generated serialization of error bodies; nulls are left out.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ApiErrorBody))]
[JsonSerializable(typeof(StreamErrorBody))]
internal sealed partial class ApiJsonContext : JsonSerializerContext;
