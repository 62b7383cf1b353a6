using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Features;

namespace AiStream.Gateway.Api;

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
            return (await ParseBodyAsync(request.BodyReader, cancellationToken).ConfigureAwait(false), null);
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

    /// <summary>
    /// Bodies larger than this are parsed on the thread pool: with event-loop socket I/O the request handler runs on a
    /// socket event thread, and parsing megabytes there would hold up every other connection of that thread.
    /// </summary>
    public const int OffloadBytes = 256 * 1024;

    private static async Task<JsonNode?> ParseBodyAsync(System.IO.Pipelines.PipeReader body, CancellationToken cancellationToken)
    {
        // Buffer the whole body first (Kestrel enforces the size limit while it is read), then parse it in one go.
        System.IO.Pipelines.ReadResult read;
        while (true)
        {
            read = await body.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (read.IsCompleted || read.IsCanceled)
            {
                break;
            }

            body.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }

        var buffer = read.Buffer;
        try
        {
            return buffer.Length > OffloadBytes
                ? await Task.Run(() => Parse(buffer), cancellationToken).ConfigureAwait(false)
                : Parse(buffer);
        }
        finally
        {
            body.AdvanceTo(buffer.End);
        }
    }

    private static JsonNode? Parse(System.Buffers.ReadOnlySequence<byte> utf8)
    {
        if (utf8.IsSingleSegment)
        {
            CheckStrings(utf8.FirstSpan);
            return JsonNode.Parse(utf8.FirstSpan, documentOptions: Strict);
        }

        var copy = System.Buffers.ArrayPool<byte>.Shared.Rent((int)utf8.Length);
        try
        {
            System.Buffers.BuffersExtensions.CopyTo(utf8, copy);
            CheckStrings(copy.AsSpan(0, (int)utf8.Length));
            return JsonNode.Parse(copy.AsSpan(0, (int)utf8.Length), documentOptions: Strict);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(copy);
        }
    }

    /// <summary>
    /// Refuses escaped strings that are not valid UTF-16 (a lone surrogate such as <c>"\ud800"</c>): JSON allows the
    /// escape, but the string cannot be read, written to a log or forwarded, and failed later as a 500. Raw UTF-8 is
    /// validated by the reader itself, so only escaped strings are decoded here.
    /// </summary>
    private static void CheckStrings(ReadOnlySpan<byte> utf8)
    {
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = Strict.MaxDepth });
        while (reader.Read())
        {
            if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
            {
                try
                {
                    _ = reader.GetString();
                }
                catch (InvalidOperationException)
                {
                    throw new JsonException($"A string at byte {reader.TokenStartIndex} escapes an unpaired UTF-16 surrogate.");
                }
            }
        }
    }

    /// <summary>Parses client JSON from a SignalR argument with the same rules as HTTP bodies; null on bad JSON.</summary>
    public static JsonNode? FromElement(JsonElement element)
    {
        try
        {
            var text = System.Text.Encoding.UTF8.GetBytes(element.GetRawText());
            CheckStrings(text);
            return JsonNode.Parse(text, documentOptions: Strict);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
