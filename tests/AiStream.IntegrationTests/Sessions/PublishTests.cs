using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary><c>POST /api/sessions/{id}/events</c>: positions under concurrency, idempotency and validation.</summary>
public sealed class PublishTests : IAsyncLifetime, IDisposable
{
    private readonly GatewayFactory _gateway = new(Sim());
    private HttpClient _http = null!;

    public Task InitializeAsync()
    {
        _http = _gateway.Client();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _gateway.DisposeAsync();
    }

    public void Dispose() => _gateway.Dispose();

    [Fact]
    public async Task Publish_EightConcurrentPublishers_WatcherSeesEveryEventOnceInLogOrder()
    {
        const int Publishers = 8;
        const int PerPublisher = 50;
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(_http, session);

        // Publisher p sends its 50 events in batches of p % 4 + 1 (1 to 4), all publishers at once.
        var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var publishers = Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            await start.Task;
            var seqs = new List<long>();
            var batch = p % 4 + 1;
            for (var i = 0; i < PerPublisher; i += batch)
            {
                var events = Enumerable.Range(i, Math.Min(batch, PerPublisher - i))
                    .Select(n => Custom("n", new JsonObject { ["publisher"] = p, ["i"] = n })).ToArray();
                var assigned = await PublishAsync(_http, session, events);
                Assert.Equal(events.Length, assigned.Length);
                Assert.Equal(Enumerable.Range(0, assigned.Length).Select(k => assigned[0] + k), assigned); // a batch is contiguous
                seqs.AddRange(assigned);
            }

            return seqs;
        })).ToList();
        start.SetResult();
        var published = (await Task.WhenAll(publishers)).SelectMany(s => s).ToList();

        var snapshot = await watcher.ReadCountAsync(2);
        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT"], snapshot.Select(e => e.Type));
        Assert.All(snapshot, e => Assert.Equal(0, e.Id));
        var seen = await watcher.ReadCountAsync(Publishers * PerPublisher);

        Assert.All(seen, e => Assert.Equal("CUSTOM", e.Type));
        Assert.Equal(published.Order(), seen.Select(e => e.Seq));
        AssertConsecutive(watcher.Live, 1); // the watcher's own presence.join shares the positions
        for (var p = 0; p < Publishers; p++)
        {
            var own = seen.Where(e => e.Data["value"]!["publisher"]!.GetValue<int>() == p).Select(e => e.Data["value"]!["i"]!.GetValue<int>());
            Assert.Equal(Enumerable.Range(0, PerPublisher), own);
        }

        var info = await InfoAsync(_http, session);
        Assert.Equal(published.Max(), info["headSeq"]!.GetValue<long>());
    }

    [Fact]
    public async Task Publish_SameIdempotencyKeyTwice_SecondIsReplayedAndLoggedOnce()
    {
        var session = NewSessionId();
        var batch = new JsonArray(Custom("a", 1), Custom("b", 2)).ToJsonString();

        var (first, firstStatus) = await PublishRawAsync(session, batch, "key-1");
        var (again, againStatus) = await PublishRawAsync(session, batch, "key-1");
        var (other, otherStatus) = await PublishRawAsync(session, batch, "key-2");

        Assert.Equal(201, firstStatus);
        Assert.Equal([1L, 2L], Seqs(first));
        Assert.False(first["replayed"]!.GetValue<bool>());
        Assert.Equal(200, againStatus);
        Assert.Equal([1L, 2L], Seqs(again));
        Assert.True(again["replayed"]!.GetValue<bool>());
        Assert.Equal(201, otherStatus);
        Assert.Equal([3L, 4L], Seqs(other));
        Assert.False(other["replayed"]!.GetValue<bool>());

        // The log holds the first batch once, then the second key's batch.
        using var watcher = await SessionWatcher.OpenAsync(_http, session, after: 0);
        var replay = await watcher.ReadCountAsync(4);
        Assert.Equal([1L, 2L, 3L, 4L], replay.Select(e => e.Seq));
        Assert.Equal(["a", "b", "a", "b"], replay.Select(e => e.Str("name")));
        var marker = await PublishAsync(_http, session, Custom("marker", null));
        Assert.Equal(marker[0], (await watcher.NextAsync())!.Seq);
        // Nothing else was in the log but the watcher's own presence.
        Assert.Equal([1L, 2L, 3L, 4L, marker[0]], watcher.Seen.Select(e => e.Seq));
        AssertConsecutive(watcher.Events, 1);
        Assert.Equal(marker[0], (await InfoAsync(_http, session))["headSeq"]!.GetValue<long>());
    }

    public static TheoryData<string, string> InvalidBodies => new()
    {
        { """{"type":"NOT_A_TYPE"}""", "invalid_event" },
        { """{"name":"x"}""", "invalid_event" },
        { """{"type":7}""", "invalid_event" },
        { """{"type":"TEXT_MESSAGE_CONTENT","messageId":"m"}""", "invalid_event" },
        { """{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":""}""", "invalid_event" },
        { """{"type":"TEXT_MESSAGE_CONTENT","delta":"x"}""", "invalid_event" },
        { """{"type":"TEXT_MESSAGE_START","messageId":"m","role":5}""", "invalid_event" },
        { """{"type":"RUN_STARTED"}""", "invalid_event" },
        { """{"type":"CUSTOM"}""", "invalid_event" },
        { """{"type":"CUSTOM","name":"x","timestamp":1.5}""", "invalid_event" },
        { """{"type":"CUSTOM","name":"x","timestamp":"now"}""", "invalid_event" },
        { """{"type":"STATE_DELTA","delta":{}}""", "invalid_event" },
        { """{"type":"STATE_DELTA","delta":[{"op":"explode","path":"/a"}]}""", "invalid_event" },
        { """{"type":"STATE_DELTA","delta":[{"op":"add","path":"/a"}]}""", "invalid_event" },
        { """{"type":"STATE_SNAPSHOT"}""", "invalid_event" },
        { """{"type":"MESSAGES_SNAPSHOT","messages":{}}""", "invalid_event" },
        { """[{"type":"CUSTOM","name":"ok"},{"type":"CUSTOM"}]""", "invalid_event" },
        { """[{"type":"CUSTOM","name":"ok"},null]""", "invalid_event" },
        { """null""", "invalid_event" },
        { """42""", "invalid_event" },
        { """[]""", "invalid_request" },
        { "", "invalid_json" },
        { "not json", "invalid_json" },
        { """{"type":"CUSTOM","name":"x" """, "invalid_json" },
        { new string('[', 200) + new string(']', 200), "invalid_json" },
    };

    [Theory]
    [MemberData(nameof(InvalidBodies))]
    public async Task Publish_InvalidBody_Returns400ProblemAndAppendsNothing(string body, string code)
    {
        var session = NewSessionId();

        using var response = await _http.PostAsync($"api/sessions/{session}/events", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();

        Assert.True(400 == (int)response.StatusCode, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        var problem = JsonNode.Parse(text)!;
        Assert.Equal(400, problem["status"]!.GetValue<int>());
        Assert.Equal(code, problem["error"]!["code"]!.GetValue<string>());
        Assert.Equal(0, (await InfoAsync(_http, session))["headSeq"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("api/sessions/{0}/events", """{"type":"CUSTOM","name":"x","name":"y"}""")]
    [InlineData("api/sessions/{0}/runs", """{"messages":[],"messages":[]}""")]
    [InlineData("agui", """{"threadId":"{0}","threadId":"{0}"}""")]
    public async Task Post_DuplicatePropertyNames_Returns400NotServerError(string path, string body)
    {
        var session = NewSessionId();

        using var response = await _http.PostAsync(path.Replace("{0}", session, StringComparison.Ordinal),
            new StringContent(body.Replace("{0}", session, StringComparison.Ordinal), Encoding.UTF8, "application/json"));

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
    }

    public static TheoryData<string> BadSessionIds => new()
    {
        "a%20b",
        new string('x', 200),
        "caf%C3%A9",
        "semi%3Bcolon",
    };

    [Theory]
    [MemberData(nameof(BadSessionIds))]
    public async Task AnyEndpoint_BadSessionId_Returns400Problem(string sessionId)
    {
        var custom = Custom("x", null).ToJsonString();
        using var publish = await _http.PostAsync($"api/sessions/{sessionId}/events", new StringContent(custom, Encoding.UTF8, "application/json"));
        using var watch = await _http.GetAsync($"api/sessions/{sessionId}/events", HttpCompletionOption.ResponseHeadersRead);
        using var info = await _http.GetAsync($"api/sessions/{sessionId}");
        using var run = await _http.PostAsJsonAsync($"api/sessions/{sessionId}/runs", new JsonObject());

        foreach (var response in new[] { publish, watch, info, run })
        {
            Assert.True(400 == (int)response.StatusCode, $"{response.RequestMessage!.Method} {response.RequestMessage.RequestUri} answered {(int)response.StatusCode}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
            var problem = await response.Content.ReadFromJsonAsync<JsonObject>();
            Assert.Equal("invalid_session_id", problem!["error"]!["code"]!.GetValue<string>());
        }
    }

    [Theory]
    [InlineData("?after=abc", null)]
    [InlineData("?after=-1", null)]
    [InlineData("", "x1")]
    public async Task Watch_BadPosition_Returns400Problem(string query, string? lastEventId)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/sessions/{NewSessionId()}/events{query}");
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
    }

    private async Task<(JsonObject Body, int Status)> PublishRawAsync(string session, string body, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/sessions/{session}/events")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("Idempotency-Key", key);
        using var response = await _http.SendAsync(request);
        return ((await response.Content.ReadFromJsonAsync<JsonObject>())!, (int)response.StatusCode);
    }

    private static long[] Seqs(JsonObject answer) => answer["seqs"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
}
