using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>One session event as an SSE watcher received it: its <c>id:</c> line and its JSON.</summary>
internal sealed record WatchedEvent(long Id, string Json)
{
    public JsonObject Data { get; } = (JsonObject)JsonNode.Parse(Json)!;

    public string Type => Data["type"]!.GetValue<string>();

    public long Seq => Data["seq"]!.GetValue<long>();

    public string? Str(string name) => Data[name]?.GetValue<string>();

    /// <summary>Presence events (<c>CUSTOM presence.*</c>) share the log with everything else; most tests look past them.</summary>
    public bool IsPresence => Type == "CUSTOM" && Str("name") is { } name && name.StartsWith("presence.", StringComparison.Ordinal);

    /// <summary>RUN_FINISHED's outcome type (an AG-UI 1.0 object, or a plain string).</summary>
    public string? OutcomeType => Data["outcome"] is JsonObject o ? o["type"]?.GetValue<string>() : Data["outcome"]?.GetValue<string>();

    /// <summary>Why a run was cancelled, beside its outcome.</summary>
    public string? OutcomeReason => (Data["outcome"] as JsonObject)?["reason"]?.GetValue<string>() ?? Data["reason"]?.GetValue<string>();

    public override string ToString() => $"{Id} {Json}";
}

/// <summary>
/// An SSE watch of <c>GET /api/sessions/{id}/events</c>, read event by event. Disposing it closes the socket, as a
/// killed client would.
/// </summary>
internal sealed class SessionWatcher : IDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    private readonly HttpResponseMessage _response;
    private readonly SseReader _reader;

    private SessionWatcher(HttpResponseMessage response, Stream stream)
    {
        _response = response;
        _reader = new SseReader(stream);
    }

    public HttpResponseMessage Response => _response;

    /// <summary>Everything read so far except presence events, in order.</summary>
    public List<WatchedEvent> Seen { get; } = [];

    /// <summary>Everything read so far, presence included: the positions a client resumes from.</summary>
    public List<WatchedEvent> All { get; } = [];

    /// <summary>The position the join snapshot carried, when the watch started with one.</summary>
    public long? SnapshotHead => All.Count > 0 && All[0].Type == "MESSAGES_SNAPSHOT" ? All[0].Id : null;

    /// <summary>The events after the join snapshot (or the whole replay), presence included.</summary>
    public IEnumerable<WatchedEvent> Live => SnapshotHead is { } head ? All.Where(e => e.Id > head) : All;

    /// <summary>Comment lines (heartbeats, disconnect reasons) read so far.</summary>
    public List<string> Comments { get; } = [];

    /// <summary>Opens a watch; the gateway has registered the subscriber once the headers are back.</summary>
    public static async Task<SessionWatcher> OpenAsync(HttpClient http, string sessionId, long? lastEventId = null, long? after = null)
    {
        var uri = $"api/sessions/{sessionId}/events" + (after is { } a ? "?after=" + a.ToString(CultureInfo.InvariantCulture) : "");
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Accept.ParseAdd("text/event-stream");
        if (lastEventId is { } last)
        {
            request.Headers.Add("Last-Event-ID", last.ToString(CultureInfo.InvariantCulture));
        }

        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        return new SessionWatcher(response, await response.Content.ReadAsStreamAsync());
    }

    /// <summary>The next event other than presence (comments and the retry hint skipped); null when the stream ended.</summary>
    public async Task<WatchedEvent?> NextAsync(TimeSpan? timeout = null)
    {
        while (true)
        {
            var e = await NextOfAnyKindAsync(timeout);
            if (e is null || !e.IsPresence)
            {
                return e;
            }
        }
    }

    /// <summary>The next event, presence included; null when the stream ended.</summary>
    public async Task<WatchedEvent?> NextOfAnyKindAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (true)
        {
            List<string>? lines;
            try
            {
                lines = await _reader.NextEventAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"No session event within {(timeout ?? DefaultTimeout).TotalSeconds} s; seen {Seen.Count}, last: {Seen.LastOrDefault()}");
            }

            if (lines is null)
            {
                return null;
            }

            Comments.AddRange(lines.Where(l => l.StartsWith(':')));
            var id = lines.FirstOrDefault(l => l.StartsWith("id: ", StringComparison.Ordinal));
            var data = lines.FirstOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal));
            if (data is null)
            {
                continue;
            }

            Assert.NotNull(id);
            var e = new WatchedEvent(long.Parse(id["id: ".Length..], CultureInfo.InvariantCulture), data["data: ".Length..]);
            Assert.Equal(e.Id, e.Seq);
            All.Add(e);
            if (!e.IsPresence)
            {
                Seen.Add(e);
            }

            return e;
        }
    }

    /// <summary>Reads up to and including the first event matching <paramref name="stop"/>.</summary>
    public async Task<List<WatchedEvent>> ReadUntilAsync(Func<WatchedEvent, bool> stop, TimeSpan? timeout = null)
    {
        var events = new List<WatchedEvent>();
        while (true)
        {
            var e = await NextAsync(timeout) ?? throw new InvalidOperationException("The watch ended early; seen: " + string.Join("\n", events));
            events.Add(e);
            if (stop(e))
            {
                return events;
            }
        }
    }

    public Task<List<WatchedEvent>> ReadUntilTypeAsync(string type, TimeSpan? timeout = null) => ReadUntilAsync(e => e.Type == type, timeout);

    public async Task<List<WatchedEvent>> ReadCountAsync(int count, TimeSpan? timeout = null)
    {
        var events = new List<WatchedEvent>(count);
        while (events.Count < count)
        {
            events.Add(await NextAsync(timeout) ?? throw new InvalidOperationException($"The watch ended after {events.Count} of {count} events."));
        }

        return events;
    }

    public void Dispose()
    {
        _reader.Dispose();
        _response.Dispose();
    }
}

/// <summary>Calls on the sessions API and settings for the simulated model.</summary>
internal static class SessionApi
{
    /// <summary>
    /// A client of the gateway that closes a connection as soon as a response is disposed, as a killed client would,
    /// instead of draining it for up to two seconds to reuse the connection.
    /// </summary>
    public static HttpClient Client(this GatewayFactory gateway) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.Start(), Timeout = TimeSpan.FromSeconds(60) };

    public static string NewSessionId() => "s-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>The built-in simulated model at a pace; 0 streams instantly.</summary>
    public static Dictionary<string, string?> Sim(double tokensPerSecond = 0) => new()
    {
        ["AiStream:Providers:sim:TokensPerSecond"] = tokensPerSecond.ToString(CultureInfo.InvariantCulture),
        ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
    };

    public static JsonObject Custom(string name, JsonNode? value) => new() { ["type"] = "CUSTOM", ["name"] = name, ["value"] = value };

    public static JsonObject Text(string type, string messageId, string? delta = null, string? role = null)
    {
        var e = new JsonObject { ["type"] = type, ["messageId"] = messageId };
        if (delta is not null)
        {
            e["delta"] = delta;
        }

        if (role is not null)
        {
            e["role"] = role;
        }

        return e;
    }

    /// <summary>Publishes one event or a batch; asserts 201 and returns the positions.</summary>
    public static async Task<long[]> PublishAsync(HttpClient http, string sessionId, params JsonObject[] events)
    {
        JsonNode body = events.Length == 1 ? events[0] : new JsonArray(events.Select(e => (JsonNode)e).ToArray());
        using var response = await http.PostAsync($"api/sessions/{sessionId}/events",
            new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(201 == (int)response.StatusCode, $"publish answered {(int)response.StatusCode}: {answer}");
        Assert.False(answer!["replayed"]!.GetValue<bool>());
        return answer["seqs"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
    }

    /// <summary>Starts a run with one user message; asserts 202 and returns the run id.</summary>
    public static async Task<string> StartRunAsync(HttpClient http, string sessionId, string content = "hi")
    {
        using var response = await http.PostAsJsonAsync($"api/sessions/{sessionId}/runs", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        });
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(202 == (int)response.StatusCode, $"start run answered {(int)response.StatusCode}: {answer}");
        Assert.Equal(sessionId, answer!["sessionId"]!.GetValue<string>());
        return answer["runId"]!.GetValue<string>();
    }

    public static async Task<JsonObject> InfoAsync(HttpClient http, string sessionId)
    {
        using var response = await http.GetAsync($"api/sessions/{sessionId}");
        Assert.Equal(200, (int)response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonObject>())!;
    }

    public static List<string> ActiveRuns(JsonObject info) => info["activeRuns"]!.AsArray().Select(r => r!.GetValue<string>()).ToList();

    /// <summary>Polls <paramref name="condition"/> until it holds; for state the gateway only changes on its own threads.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(5));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Timed out waiting for: " + what);
            }

            await Task.Delay(20);
        }
    }

    /// <summary>The concatenated deltas of one message, as a client would render it.</summary>
    public static string TextOf(IEnumerable<WatchedEvent> events, string messageId) =>
        string.Concat(events.Where(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Str("messageId") == messageId).Select(e => e.Str("delta")));

    /// <summary>Asserts positions go up by exactly one: no gap, no duplicate.</summary>
    public static void AssertConsecutive(IEnumerable<WatchedEvent> events, long? first = null)
    {
        var seqs = events.Select(e => e.Seq).ToList();
        Assert.NotEmpty(seqs);
        Assert.Equal(Enumerable.Range(0, seqs.Count).Select(i => (first ?? seqs[0]) + i), seqs);
    }

    /// <summary>The id of the assistant message a run streams.</summary>
    public static string AssistantMessageId(IEnumerable<WatchedEvent> events) =>
        events.First(e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant").Str("messageId")!;
}
