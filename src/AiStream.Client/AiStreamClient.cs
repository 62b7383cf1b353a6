using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AiStream.Client;

/// <summary>
/// A client of one AiStream gateway. Watches reconnect with exponential backoff and full jitter and resume from the
/// last position (no gap, no duplicate); publishes, run starts and cancels retry what may succeed later
/// (network errors, 429 with its Retry-After, 5xx) and stop on any other refusal with an <see cref="AiStreamException"/>.
/// </summary>
public sealed class AiStreamClient(HttpClient http, AiStreamClientOptions options)
{
    /// <summary>
    /// The session's events, live, as an endless stream until <paramref name="cancellationToken"/> is cancelled. A
    /// dropped connection is reopened with <c>Last-Event-ID</c>: the events after the last one yielded follow, each
    /// once. A refusal (401 after a token refresh, 403, 400) ends the stream with an <see cref="AiStreamException"/>.
    /// </summary>
    public async IAsyncEnumerable<SessionEvent> WatchAsync(string sessionId, WatchOptions? watch = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        watch ??= new WatchOptions();
        var last = watch.After;
        var attempt = 0;
        var refreshedAfter401 = false;
        long? snapshotAt = null; // a catch-up's events all carry the position it summarises
        watch.OnStateChanged?.Invoke(new ConnectionState(ConnectionStatus.Connecting));
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                HttpResponseMessage? response = null;
                Exception? failure = null;
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, Url(sessionId, watch));
                    request.Headers.Accept.ParseAdd("text/event-stream");
                    if (last is { } position)
                    {
                        request.Headers.Add("Last-Event-ID", position.ToString(CultureInfo.InvariantCulture));
                    }

                    await AuthorizeAsync(request, cancellationToken).ConfigureAwait(false);
                    response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
                    if (!response.IsSuccessStatusCode)
                    {
                        var error = await AiStreamException.FromAsync(response, cancellationToken).ConfigureAwait(false);
                        response.Dispose();
                        if (error.Status == 401 && options.AccessToken is not null && !refreshedAfter401)
                        {
                            refreshedAfter401 = true; // the token may have expired: the next attempt asks for a fresh one
                            failure = error;
                        }
                        else if (error.IsRetryable)
                        {
                            failure = error;
                        }
                        else
                        {
                            throw error;
                        }
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
                {
                    failure = ex;
                }

                if (failure is null && response is not null)
                {
                    using (response)
                    {
                        attempt = 0;
                        refreshedAfter401 = false;
                        watch.OnStateChanged?.Invoke(new ConnectionState(ConnectionStatus.Live));
                        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
                        var parser = SseParser.Create(stream);
                        await using var items = parser.EnumerateAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
                        while (true)
                        {
                            SseItem<string> item;
                            try
                            {
                                if (!await items.MoveNextAsync().ConfigureAwait(false))
                                {
                                    break; // the server closed the stream: reconnect and resume
                                }

                                item = items.Current;
                            }
                            catch (Exception ex) when (ex is IOException or HttpRequestException && !cancellationToken.IsCancellationRequested)
                            {
                                failure = ex;
                                break;
                            }

                            if (ToEvent(item) is not { } e)
                            {
                                continue;
                            }

                            if (e.Seq == 0 && string.IsNullOrEmpty(item.EventId))
                            {
                                yield return e; // a notice with no position (auth.expired before the gateway closes): resume is unchanged
                                continue;
                            }

                            snapshotAt = e.IsSnapshot ? e.Seq : snapshotAt;
                            if (last is { } seen && e.Seq <= seen && e.Seq != snapshotAt)
                            {
                                continue; // already yielded
                            }

                            last = e.Seq;
                            yield return e;
                        }
                    }
                }

                attempt++;
                watch.OnStateChanged?.Invoke(new ConnectionState(ConnectionStatus.Reconnecting, attempt, failure));
                await Task.Delay(attempt == 1 && failure is null ? TimeSpan.Zero : options.Backoff(attempt), options.TimeProvider, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            watch.OnStateChanged?.Invoke(new ConnectionState(ConnectionStatus.Offline));
        }
    }

    /// <summary>
    /// Appends events to the session; returns their positions. With <paramref name="idempotencyKey"/> a retry (this
    /// method's own, or the caller's after a crash) appends nothing twice.
    /// </summary>
    public async Task<PublishResult> PublishAsync(string sessionId, IReadOnlyList<JsonObject> events, string? idempotencyKey = null,
        CancellationToken cancellationToken = default)
    {
        JsonNode body = events.Count == 1 ? events[0].DeepClone() : new JsonArray([.. events.Select(e => e.DeepClone())]);
        var answer = await SendAsync(HttpMethod.Post, $"api/sessions/{Uri.EscapeDataString(sessionId)}/events", body, idempotencyKey, cancellationToken)
            .ConfigureAwait(false);
        return new PublishResult([.. answer["seqs"]!.AsArray().Select(s => s!.GetValue<long>())], answer["replayed"]!.GetValue<bool>());
    }

    /// <summary>
    /// Starts a run: <c>messages</c>, and <c>model</c>, <c>prompt</c> with <c>variables</c>, or <c>agent</c>, as
    /// <c>POST /api/sessions/{id}/runs</c> takes them. Returns the run id; its events arrive on the session's watches.
    /// </summary>
    public async Task<string> StartRunAsync(string sessionId, JsonObject run, CancellationToken cancellationToken = default)
    {
        var answer = await SendAsync(HttpMethod.Post, $"api/sessions/{Uri.EscapeDataString(sessionId)}/runs", run, null, cancellationToken).ConfigureAwait(false);
        return answer["runId"]!.GetValue<string>();
    }

    /// <summary>Cancels a run for everyone watching; returns its outcome (<c>cancelled</c>, or how it had already ended).</summary>
    public async Task<string> CancelRunAsync(string sessionId, string runId, CancellationToken cancellationToken = default)
    {
        var answer = await SendAsync(HttpMethod.Post, $"api/sessions/{Uri.EscapeDataString(sessionId)}/runs/{Uri.EscapeDataString(runId)}/cancel", null, null,
            cancellationToken).ConfigureAwait(false);
        return answer["outcome"]!.GetValue<string>();
    }

    /// <summary>Replaces the presence state (typing, viewing, …) of member <paramref name="clientId"/> in the session.</summary>
    public Task SetPresenceStateAsync(string sessionId, string clientId, JsonObject state, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Post, $"api/sessions/{Uri.EscapeDataString(sessionId)}/presence/state?clientId={Uri.EscapeDataString(clientId)}", state, null,
            cancellationToken, expectBody: false);

    private async Task<JsonObject> SendAsync(HttpMethod method, string path, JsonNode? body, string? idempotencyKey, CancellationToken cancellationToken,
        bool expectBody = true)
    {
        for (var attempt = 1; ; attempt++)
        {
            TimeSpan? wait;
            try
            {
                using var request = new HttpRequestMessage(method, new Uri(options.BaseAddress, path));
                if (body is not null)
                {
                    request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
                }

                if (idempotencyKey is not null)
                {
                    request.Headers.Add("Idempotency-Key", idempotencyKey);
                }

                await AuthorizeAsync(request, cancellationToken).ConfigureAwait(false);
                using var response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    return expectBody && response.StatusCode != HttpStatusCode.NoContent
                        ? JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)) as JsonObject ?? []
                        : [];
                }

                var error = await AiStreamException.FromAsync(response, cancellationToken).ConfigureAwait(false);
                if (!error.IsRetryable || attempt >= options.MaxAttempts)
                {
                    throw error;
                }

                wait = error.RetryAfter;
            }
            catch (HttpRequestException) when (attempt < options.MaxAttempts && !cancellationToken.IsCancellationRequested)
            {
                wait = null;
            }

            await Task.Delay(wait ?? options.Backoff(attempt), options.TimeProvider, cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask AuthorizeAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (options.AccessToken is { } provider && await provider(cancellationToken).ConfigureAwait(false) is { Length: > 0 } token)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }

    private Uri Url(string sessionId, WatchOptions watch)
    {
        var query = new List<string>();
        foreach (var (name, value) in new[] { ("clientId", watch.ClientId), ("name", watch.Name), ("color", watch.Color) })
        {
            if (value is not null)
            {
                query.Add(name + "=" + Uri.EscapeDataString(value));
            }
        }

        return new Uri(options.BaseAddress, $"api/sessions/{Uri.EscapeDataString(sessionId)}/events" + (query.Count > 0 ? "?" + string.Join('&', query) : ""));
    }

    private static SessionEvent? ToEvent(SseItem<string> item)
    {
        if (string.IsNullOrEmpty(item.Data) || JsonNode.Parse(item.Data) is not JsonObject data || data["type"] is not JsonValue type)
        {
            return null;
        }

        var seq = data["seq"] is JsonValue s && s.TryGetValue<long>(out var position) ? position
            : long.TryParse(item.EventId, NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id : 0;
        return new SessionEvent(seq, type.GetValue<string>(), data);
    }
}

/// <summary>The positions a publish got, and whether it was a replay of an earlier one with the same key.</summary>
public sealed record PublishResult(IReadOnlyList<long> Seqs, bool Replayed);

/// <summary>The gateway refused a request; <see cref="Status"/> and <see cref="Code"/> say why.</summary>
public sealed class AiStreamException(int status, string? code, string message, TimeSpan? retryAfter = null) : Exception(message)
{
    /// <summary>The HTTP status.</summary>
    public int Status { get; } = status;

    /// <summary>The problem's <c>error.code</c> (<c>session_forbidden</c>, <c>too_many_messages</c>, …).</summary>
    public string? Code { get; } = code;

    /// <summary>The gateway's <c>Retry-After</c>, when it gave one.</summary>
    public TimeSpan? RetryAfter { get; } = retryAfter;

    /// <summary>Whether the same request may succeed later: 408, 429 or a 5xx.</summary>
    public bool IsRetryable => Status is 408 or 429 or >= 500;

    internal static async Task<AiStreamException> FromAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        string? code = null;
        var message = $"The gateway answered {(int)response.StatusCode}.";
        try
        {
            if (JsonNode.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false)) is JsonObject problem)
            {
                code = (problem["error"]?["code"] as JsonValue)?.ToString();
                message = (problem["detail"] as JsonValue)?.ToString() ?? message;
            }
        }
        catch (JsonException)
        {
            // Not problem details (a proxy's page): the status says enough.
        }

        return new AiStreamException((int)response.StatusCode, code, message, response.Headers.RetryAfter?.Delta);
    }
}
