using System.Buffers;
using System.Net.Http.Headers;
using System.Net.ServerSentEvents;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;

namespace AiStream.Gateway.Completions;

/// <summary>A pooled copy of one SSE data payload.</summary>
internal readonly record struct SseFrame(byte[] Buffer, int Length);

/// <summary>
/// Streams an OpenAI-compatible upstream (OpenAI, Azure OpenAI, Ollama, vLLM). The SSE is parsed with
/// System.Net.ServerSentEvents; each data payload is kept as the bytes the upstream sent, so the relay loses nothing.
/// </summary>
internal sealed class HttpUpstreamStream(HttpClient http, ModelRoute route, byte[] body, TimeProvider time, CancellationToken clientAborted)
    : UpstreamStream(time, clientAborted)
{
    private readonly TimeProvider _time = time;

    private static readonly SseItemParser<SseFrame> CopyFrame = static (_, data) =>
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(data.Length, 1));
        data.CopyTo(buffer);
        return new SseFrame(buffer, data.Length);
    };

    private HttpResponseMessage? _response;
    private IAsyncEnumerator<SseItem<SseFrame>>? _items;
    private byte[]? _held;

    protected override async Task ConnectAsync()
    {
        using var request = UpstreamRequests.Create(route, body);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        _response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, Token).ConfigureAwait(false);
        if (!_response.IsSuccessStatusCode)
        {
            throw await UpstreamRequests.FailureAsync(_response, _time, Token).ConfigureAwait(false);
        }

        var stream = await _response.Content.ReadAsStreamAsync(Token).ConfigureAwait(false);
        _items = SseParser.Create(stream, CopyFrame).EnumerateAsync(Token).GetAsyncEnumerator(Token);
    }

    protected override async ValueTask<bool> ReadCoreAsync()
    {
        Release();
        while (await _items!.MoveNextAsync().ConfigureAwait(false))
        {
            var frame = _items.Current.Data;
            var payload = frame.Buffer.AsSpan(0, frame.Length);
            if (payload.Trim((byte)' ').IsEmpty)
            {
                ArrayPool<byte>.Shared.Return(frame.Buffer);
                continue;
            }

            if (payload.SequenceEqual("[DONE]"u8))
            {
                ArrayPool<byte>.Shared.Return(frame.Buffer);
                SawDone = true;
                return false;
            }

            _held = frame.Buffer;
            Current = frame.Buffer.AsMemory(0, frame.Length);
            return true;
        }

        return false;
    }

    private void Release()
    {
        if (_held is { } held)
        {
            _held = null;
            Current = default;
            ArrayPool<byte>.Shared.Return(held);
        }
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        if (_items is not null)
        {
            try
            {
                await _items.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException or OperationCanceledException)
            {
                // The connection is being torn down anyway.
            }
        }

        Release();
        // Disposing a response whose body was not read to the end closes the connection: the upstream sees the abort.
        _response?.Dispose();
    }
}

/// <summary>Builds upstream requests and classifies their failures.</summary>
internal static class UpstreamRequests
{
    public static HttpRequestMessage Create(ModelRoute route, byte[] body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, UpstreamUris.ChatCompletions(route))
        {
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (!string.IsNullOrEmpty(route.Provider.ApiKey))
        {
            if (route.Provider.Type == ProviderTypes.AzureOpenAI)
            {
                request.Headers.TryAddWithoutValidation("api-key", route.Provider.ApiKey);
            }
            else
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", route.Provider.ApiKey);
            }
        }

        return request;
    }

    /// <summary>Reads (at most 64 KiB of) a failed response and turns it into an <see cref="UpstreamException"/>.</summary>
    public static async Task<UpstreamException> FailureAsync(HttpResponseMessage response, TimeProvider time, CancellationToken cancellationToken)
    {
        byte[] body;
        try
        {
            await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            var buffer = new byte[64 * 1024];
            var total = 0;
            int read;
            while (total < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken).ConfigureAwait(false)) > 0)
            {
                total += read;
            }

            body = buffer.AsSpan(0, total).ToArray();
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            body = [];
        }

        var status = (int)response.StatusCode;
        return new UpstreamException(
            UpstreamFailureKind.Status,
            $"The upstream answered {status} {response.ReasonPhrase}.",
            status,
            RetryAfter(response, time),
            body,
            response.Content.Headers.ContentType?.ToString());
    }

    private static TimeSpan? RetryAfter(HttpResponseMessage response, TimeProvider time)
    {
        if (response.Headers.RetryAfter is not { } retryAfter)
        {
            return null;
        }

        if (retryAfter.Delta is { } delta)
        {
            return delta;
        }

        return retryAfter.Date is { } date ? (date - time.GetUtcNow()) is var wait && wait > TimeSpan.Zero ? wait : TimeSpan.Zero : null;
    }
}
