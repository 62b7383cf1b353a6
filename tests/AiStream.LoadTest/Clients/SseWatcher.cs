using System.Globalization;
using System.Net;
using AiStream.LoadTest.Infrastructure;

namespace AiStream.LoadTest.Clients;

/// <summary>
/// An SSE watcher of a session (<c>GET /api/sessions/{id}/events?after=</c>), or an Nchan EventSource subscriber.
/// Lines are scanned with plain string search rather than parsed as JSON: thousands of them share two cores with the
/// gateway, and the deltas the tool publishes need no unescaping.
/// </summary>
internal sealed class SseWatcher : Watcher
{
    private readonly HttpMessageInvoker _http;
    private readonly Uri _url;
    private readonly bool _nchan;
    private readonly CancellationTokenSource _stop = new();
    private Task? _reading;

    public SseWatcher(HttpMessageInvoker http, Uri url, string group, int capacity, bool nchan = false)
        : base(group, capacity)
    {
        _http = http;
        _url = url;
        _nchan = nchan;
    }

    /// <summary>A shared client for many watchers (and publishers): no connection limit, no proxy, the run's bearer token on every request.</summary>
    public static HttpMessageInvoker CreateClient(LoadAuth auth) => new(new LoadAuth.BearerHandler(auth, new SocketsHttpHandler
    {
        UseProxy = false,
        MaxConnectionsPerServer = int.MaxValue,
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        AutomaticDecompression = DecompressionMethods.None,
        ConnectTimeout = TimeSpan.FromSeconds(60),
    }));

    /// <summary>Opens the stream and returns once the response headers arrived (the watch is registered by then).</summary>
    public override async Task ConnectAsync(CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        var request = new HttpRequestMessage(HttpMethod.Get, _url);
        request.Headers.Accept.ParseAdd("text/event-stream");
        var response = await _http.SendAsync(request, linked.Token);
        if (!response.IsSuccessStatusCode)
        {
            var status = response.StatusCode;
            response.Dispose();
            request.Dispose();
            throw new HttpRequestException(string.Create(CultureInfo.InvariantCulture, $"watch {_url} answered {(int)status}"));
        }

        var stream = await response.Content.ReadAsStreamAsync(linked.Token);
        _reading = Task.Run(() => ReadAsync(request, response, stream), CancellationToken.None);
    }

    private async Task ReadAsync(HttpRequestMessage request, HttpResponseMessage response, Stream stream)
    {
        try
        {
            using var reader = new SseReader(stream, 8 * 1024);
            while (await reader.NextLineAsync(_stop.Token) is { } line)
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    Take(line.AsSpan(6));
                }
                else if (line.StartsWith(": disconnected", StringComparison.Ordinal))
                {
                    OnDisconnected(line);
                }
            }

            if (!_stop.IsCancellationRequested)
            {
                OnDisconnected("the stream ended");
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (IOException e) when (!_stop.IsCancellationRequested)
        {
            OnDisconnected(e.Message);
        }
        catch (IOException)
        {
        }
        finally
        {
            response.Dispose();
            request.Dispose();
        }
    }

    private void Take(ReadOnlySpan<char> data)
    {
        if (_nchan)
        {
            OnDelta(data, -1);
            return;
        }

        if (data.IndexOf("\"TEXT_MESSAGE_CONTENT\"", StringComparison.Ordinal) < 0)
        {
            return;
        }

        var delta = data.IndexOf("\"delta\":\"", StringComparison.Ordinal);
        var seq = data.LastIndexOf("\"seq\":", StringComparison.Ordinal);
        if (delta < 0 || seq < 0)
        {
            return;
        }

        var text = data[(delta + 9)..];
        text = text[..text.IndexOf('"')];
        var digits = data[(seq + 6)..];
        var end = digits.IndexOfAnyExceptInRange('0', '9');
        OnDelta(text, long.Parse(end < 0 ? digits : digits[..end], NumberStyles.None, CultureInfo.InvariantCulture));
    }

    public override async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_reading is not null)
        {
            await _reading;
        }

        _stop.Dispose();
    }
}
