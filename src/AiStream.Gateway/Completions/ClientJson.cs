using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Features;

namespace AiStream.Gateway.Completions;

/// <summary>How client JSON is read everywhere: a repeated property name is a 400, not an ambiguity.</summary>
internal static class ClientJson
{
    public static readonly JsonDocumentOptions Strict = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    /// <summary>Reads a JSON body up to <paramref name="limit"/> bytes; 400 for bad JSON, 413 past the limit.</summary>
    public static async Task<(JsonNode? Body, ApiError? Error)> ReadAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = limit;
        }

        if (request.ContentLength > limit)
        {
            return (null, new ApiError(StatusCodes.Status413PayloadTooLarge, $"The body is larger than {limit} bytes.", "invalid_request_error", "request_too_large"));
        }

        try
        {
            return (await JsonNode.ParseAsync(request.Body, documentOptions: Strict, cancellationToken: cancellationToken).ConfigureAwait(false), null);
        }
        catch (JsonException ex)
        {
            return (null, ApiError.BadRequest($"The body is not valid JSON: {ex.Message}", code: "invalid_json"));
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, new ApiError(StatusCodes.Status413PayloadTooLarge, $"The body is larger than {limit} bytes.", "invalid_request_error", "request_too_large"));
        }
    }

    /// <summary>Parses client JSON from a SignalR argument with the same rules as HTTP bodies; null on bad JSON.</summary>
    public static JsonNode? FromElement(JsonElement element)
    {
        try
        {
            return JsonNode.Parse(element.GetRawText(), documentOptions: Strict);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
