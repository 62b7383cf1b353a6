using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Completions;

/// <summary>Retry, fallback and the circuit breaker act only before the first token; after it, failures are reported, never replayed.</summary>
public sealed class ResilienceTests
{
    private static JsonObject Body(string model, bool stream = true) => new()
    {
        ["model"] = model,
        ["stream"] = stream,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
    };

    [Fact]
    public async Task Stream_Upstream500ThenSuccess_RetriesAndStreamsOnce()
    {
        var events = Fixtures.Events("openai-chat-text-usage.sse");
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(events));
        upstream.Then(new UpstreamScript.Fail(500), new UpstreamScript.Fail(503));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl, maxRetries: 2));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        var raw = await response.Content.ReadAsStringAsync();

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(3, upstream.RequestCount);
        Assert.Equal(Fixtures.Payloads("openai-chat-text-usage.sse").Where(p => !p.Contains("\"choices\":[]", StringComparison.Ordinal)), Fixtures.DataPayloads(raw));
    }

    [Fact]
    public async Task Stream_Upstream429WithRetryAfter_WaitsThatLongBeforeRetrying()
    {
        await using var upstream = await FakeUpstream.StartAsync();
        upstream.Then(new UpstreamScript.Fail(429, RetryAfter: "1"));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl, maxRetries: 1));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        await response.Content.ReadAsStringAsync();

        Assert.Equal(200, (int)response.StatusCode);
        var requests = upstream.Requests.ToArray();
        Assert.Equal(2, requests.Length);
        var waited = requests[1].At - requests[0].At;
        Assert.True(waited >= TimeSpan.FromMilliseconds(950), $"retried after {waited.TotalMilliseconds} ms, Retry-After was 1 s");
    }

    [Fact]
    public async Task Stream_Upstream400_IsRelayedAsAClientErrorWithoutRetryOrFallback()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Fail(400, Message: "context too long"));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl, maxRetries: 2)
            .With("AiStream:Models:gpt-test:Fallbacks:0", "sim"));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("context too long", problem!["error"]!["message"]!.GetValue<string>());
        Assert.Equal(1, upstream.RequestCount);
    }

    [Fact]
    public async Task Stream_PrimaryKeepsFailing_FallsBackInOrder()
    {
        await using var primary = await FakeUpstream.StartAsync(new UpstreamScript.Fail(502));
        await using var secondary = await FakeUpstream.StartAsync(new UpstreamScript.Fail(500));
        await using var third = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("vllm-chat-text-usage.sse")));
        var settings = Settings.Compatible(primary.BaseUrl, "gpt-test", "p1", maxRetries: 1);
        foreach (var (k, v) in Settings.Compatible(secondary.BaseUrl, "second", "p2"))
        {
            settings[k] = v;
        }

        foreach (var (k, v) in Settings.Compatible(third.BaseUrl, "third", "p3"))
        {
            settings[k] = v;
        }

        settings["AiStream:Models:gpt-test:Fallbacks:0"] = "second";
        settings["AiStream:Models:gpt-test:Fallbacks:1"] = "third";
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        var raw = await response.Content.ReadAsStringAsync();

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("third", response.Headers.GetValues("X-AiStream-Model").Single());
        Assert.Equal(2, primary.RequestCount);   // one try and one retry
        Assert.Equal(1, secondary.RequestCount); // no retries configured
        Assert.Equal("third-upstream", Assert.Single(third.Requests).Body["model"]!.GetValue<string>());
        Assert.Contains("Llama", raw, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stream_FallbackToSimulated_StreamsSimulatedProse()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Fail(503));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl).With("AiStream:Models:gpt-test:Fallbacks:0", "sim"));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        var payloads = Fixtures.DataPayloads(await response.Content.ReadAsStringAsync());

        Assert.Equal("sim", response.Headers.GetValues("X-AiStream-Model").Single());
        Assert.True(payloads.Count > 10);
        Assert.All(payloads, p => Assert.Equal("chat.completion.chunk", JsonNode.Parse(p)!["object"]!.GetValue<string>()));
    }

    [Fact]
    public async Task Stream_AllCandidatesFail_Returns502ProblemNamingThem()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Fail(500));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl, maxRetries: 1));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(502, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("upstream_error", problem!["error"]!["code"]!.GetValue<string>());
        Assert.Contains("gpt-test", problem["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(2, upstream.RequestCount);
    }

    [Fact]
    public async Task Stream_ProviderKeepsFailing_BreakerOpensAndSkipsItWithoutCallingIt()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Fail(500));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl)
            .With("AiStream:Providers:up:BreakerMinimumThroughput", 3)
            .With("AiStream:Providers:up:BreakerFailureRatio", 0.5)
            .With("AiStream:Providers:up:BreakerBreakSeconds", 60)
            .With("AiStream:Models:gpt-test:Fallbacks:0", "sim"));
        using var http = gateway.Http();

        for (var i = 0; i < 3; i++)
        {
            using var warmup = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
            Assert.Equal("sim", warmup.Headers.GetValues("X-AiStream-Model").Single());
        }

        Assert.Equal(3, upstream.RequestCount);
        for (var i = 0; i < 5; i++)
        {
            using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal("sim", response.Headers.GetValues("X-AiStream-Model").Single());
        }

        Assert.Equal(3, upstream.RequestCount); // the open circuit kept the failing provider out of the way
    }

    [Fact]
    public async Task Stream_UpstreamCutMidStream_EndsWithErrorEventThenDoneAndNoReplay()
    {
        var events = Fixtures.Events("openai-chat-text-usage-long.sse");
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.CutAfter(events, 5));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl, maxRetries: 2).With("AiStream:Models:gpt-test:Fallbacks:0", "sim"));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"));
        var raw = await response.Content.ReadAsStringAsync();
        var payloads = Fixtures.DataPayloads(raw);

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(Fixtures.Payloads("openai-chat-text-usage-long.sse").Take(5), payloads.Take(5));
        Assert.Equal(6, payloads.Count);
        var error = JsonNode.Parse(payloads[5])!["error"]!;
        Assert.Equal("upstream_stream_interrupted", error["code"]!.GetValue<string>());
        Assert.False(string.IsNullOrWhiteSpace(error["message"]!.GetValue<string>()));
        Assert.EndsWith("data: [DONE]\n\n", raw, StringComparison.Ordinal);
        Assert.Equal(1, upstream.RequestCount); // never retried after the first token
    }

    [Fact]
    public async Task Stream_FirstChunk_ReachesClientBeforeUpstreamProducesTheLast()
    {
        var events = Fixtures.Events("openai-chat-text-usage.sse");
        using var gate = new SemaphoreSlim(0);
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Gated(events, gate));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(Body("gpt-test")) };
        var send = http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        gate.Release(); // the upstream may produce exactly one chunk
        using var response = await send.WaitAsync(TimeSpan.FromSeconds(10));
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());

        var first = await reader.NextEventAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("data: " + Fixtures.Payloads("openai-chat-text-usage.sse")[0], Assert.Single(first!));

        // Only now may the upstream produce the rest.
        gate.Release(events.Count);
        var rest = await reader.ReadAllAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var expected = Fixtures.Payloads("openai-chat-text-usage.sse").Skip(1).Where(p => !p.Contains("\"choices\":[]", StringComparison.Ordinal))
            .Select(p => "data: " + p).Append("data: [DONE]");
        Assert.Equal(expected, rest.Select(e => Assert.Single(e)));
    }

    [Fact]
    public async Task Stream_ClientLeavesBeforeFirstToken_UpstreamSeesTheAbort()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.StallAfter([], 0));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.Start() };
        using var cts = new CancellationTokenSource();

        var send = http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test"), cts.Token);
        await upstream.FirstRequest.WaitAsync(TimeSpan.FromSeconds(10));
        var cancelledAt = DateTimeOffset.UtcNow;
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);

        var abortedAt = await upstream.Aborted.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(abortedAt - cancelledAt < TimeSpan.FromSeconds(1));
    }

    [Fact]
    public async Task NonStream_Upstream503ThenSuccess_RetriesAndFallsBackLikeStreaming()
    {
        const string completion = """{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}""";
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Json(completion));
        upstream.Then(new UpstreamScript.Fail(503));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl, maxRetries: 1));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body("gpt-test", stream: false));

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(completion, await response.Content.ReadAsStringAsync());
        Assert.Equal(2, upstream.RequestCount);
    }
}
