using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Transports;

/// <summary>
/// The lean SSE path (AiStream:Transports:LeanSseConnections) on a real Kestrel: a connection whose first request is
/// a plain HTTP/1.1 watch is served at the connection level with the endpoint's stream, and everything else still
/// reaches the HTTP pipeline unchanged.
/// </summary>
public sealed class LeanSseConnectionTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private GatewayProcess _gateway = null!;

    public async Task InitializeAsync() => _gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?>
    {
        ["AiStream:DefaultModel"] = "sim",
        ["AiStream:Presence:LeaveGraceSeconds"] = "0",
        // A connection that never sends a request is closed quickly (Kestrel's limits, applied after the lean path waited as long).
        ["Kestrel:Limits:RequestHeadersTimeout"] = "00:00:02",
        ["Kestrel:Limits:KeepAliveTimeout"] = "00:00:02",
    });

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    [Fact]
    public async Task FirstRequestWatch_IsServedLean_WithTheSameEventsAsTheEndpointOnAKeptAliveConnection()
    {
        var session = NewSession();
        await PublishAsync(session, "before", 0);

        // Lean: a fresh connection whose first request is the watch.
        using var leanHandler = new SocketsHttpHandler();
        using var leanClient = new HttpClient(leanHandler) { BaseAddress = _gateway.BaseAddress };
        using var lean = await leanClient.GetAsync($"api/sessions/{session}/events?clientId=lean", HttpCompletionOption.ResponseHeadersRead);

        // Endpoint: the same watch as the second request of a kept-alive connection.
        using var pipelineHandler = new SocketsHttpHandler { MaxConnectionsPerServer = 1 };
        using var pipelineClient = new HttpClient(pipelineHandler) { BaseAddress = _gateway.BaseAddress };
        (await pipelineClient.GetAsync("healthz")).EnsureSuccessStatusCode();
        using var pipeline = await pipelineClient.GetAsync($"api/sessions/{session}/events?clientId=lean", HttpCompletionOption.ResponseHeadersRead);

        Assert.Equal(HttpStatusCode.OK, lean.StatusCode);
        Assert.True(lean.Headers.ConnectionClose);
        Assert.NotEqual(true, lean.Headers.TransferEncodingChunked);
        Assert.Equal(HttpStatusCode.OK, pipeline.StatusCode);
        Assert.True(pipeline.Headers.TransferEncodingChunked);
        Assert.NotEqual(true, pipeline.Headers.ConnectionClose);
        foreach (var response in new[] { lean, pipeline })
        {
            Assert.Equal("text/event-stream; charset=utf-8", response.Content.Headers.ContentType!.ToString());
            Assert.Equal("no-cache", response.Headers.CacheControl!.ToString());
            Assert.Equal("no", Assert.Single(response.Headers.GetValues("X-Accel-Buffering")));
            Assert.Equal("lean", Assert.Single(response.Headers.GetValues("X-AiStream-Client-Id")));
        }

        using var leanReader = new SseReader(await lean.Content.ReadAsStreamAsync());
        using var pipelineReader = new SseReader(await pipeline.Content.ReadAsStreamAsync());
        for (var i = 1; i <= 5; i++)
        {
            await PublishAsync(session, "e" + i, i);
        }

        var leanEvents = await ReadUntilAsync(leanReader, "\"name\":\"e5\"");
        var pipelineEvents = await ReadUntilAsync(pipelineReader, "\"name\":\"e5\"");
        Assert.Equal(["retry: 2000"], leanEvents[0]);
        Assert.Equal(["retry: 2000"], pipelineEvents[0]);
        // Each starts with its own snapshot (taken when it joined); from the first live event on, the bytes are the same.
        static List<List<string>> Live(List<List<string>> events) =>
            events.SkipWhile(e => !string.Join("\n", e).Contains("\"name\":\"e1\"", StringComparison.Ordinal)).ToList();
        Assert.Equal(Live(pipelineEvents), Live(leanEvents));
        var customs = leanEvents.Select(e => string.Join("\n", e)).Where(e => e.Contains("\"name\":\"e", StringComparison.Ordinal)).ToList();
        Assert.Equal(5, customs.Count);
        for (var i = 0; i < 5; i++)
        {
            Assert.Contains($"\"name\":\"e{i + 1}\"", customs[i], StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("?ClientID=u1&NAME=Ada+L%C3%A9&Color=%23f00", null)]
    [InlineData("", "AISTREAM_CID=anon-aaaa; aistream_cid=anon-bbbb")]
    [InlineData("?name=Bo", "x=1; aistream_cid=anon-cccc")]
    [InlineData("?color=red", "aistream_cid=anon-dddd; aistream_cid=anon-eeee")]
    [InlineData("?clientId=&after=", "aistream_cid=bad id")]
    public async Task LeanAndPipeline_ReadTheSameIdentityFromTheSameRequest(string query, string? cookie)
    {
        async Task<(string ClientId, string Join)> WatchAsync(HttpClient client, string session)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, $"api/sessions/{session}/events{query}");
            if (cookie is not null)
            {
                request.Headers.Add("Cookie", cookie);
            }

            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
            var join = string.Join("\n", (await ReadUntilAsync(reader, "presence.join"))[^1]);
            // The member as the session sees it: id, name, colour; the rest (time, position) differs by nature.
            return (Assert.Single(response.Headers.GetValues("X-AiStream-Client-Id")), join[join.IndexOf("\"value\":", StringComparison.Ordinal)..join.IndexOf(",\"timestamp\"", StringComparison.Ordinal)]);
        }

        using var leanHandler = new SocketsHttpHandler { UseCookies = false };
        using var lean = new HttpClient(leanHandler) { BaseAddress = _gateway.BaseAddress };
        using var pipelineHandler = new SocketsHttpHandler { UseCookies = false, MaxConnectionsPerServer = 1 };
        using var pipeline = new HttpClient(pipelineHandler) { BaseAddress = _gateway.BaseAddress };
        (await pipeline.GetAsync("healthz")).EnsureSuccessStatusCode();

        var viaPipeline = await WatchAsync(pipeline, NewSession());
        var viaLean = await WatchAsync(lean, NewSession());
        if (cookie is null || cookie.Contains("bad id", StringComparison.Ordinal))
        {
            Assert.Equal(viaPipeline.Join.Replace(viaPipeline.ClientId, "ID", StringComparison.Ordinal), viaLean.Join.Replace(viaLean.ClientId, "ID", StringComparison.Ordinal));
        }
        else
        {
            Assert.Equal(viaPipeline, viaLean);
        }
    }

    [Fact]
    public async Task LeanWatch_ResumesAfterLastEventId_AndGivesAnAnonymousClientItsCookie()
    {
        var session = NewSession();
        for (var i = 0; i < 4; i++)
        {
            await PublishAsync(session, "e" + i, i);
        }

        using var raw = await RawConnection.OpenAsync(_gateway.Port);
        await raw.SendAsync($"GET /api/sessions/{session}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nLast-Event-ID: 2\r\n\r\n");
        var head = await raw.ReadHeadAsync();
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", head, StringComparison.Ordinal);
        Assert.Matches("\r\nSet-Cookie: aistream_cid=anon-[0-9a-f]{12}; path=/; samesite=lax; httponly\r\n", head);
        Assert.Matches("\r\nX-AiStream-Client-Id: anon-[0-9a-f]{12}\r\n", head);

        using var reader = new SseReader(raw.Body);
        var events = await ReadUntilAsync(reader, "\"name\":\"e3\"");
        var ids = events.Skip(1).Select(e => e.First(l => l.StartsWith("id: ", StringComparison.Ordinal))).ToList();
        // e0..e3 are at positions 1..4: only what follows Last-Event-ID 2 comes, no snapshot and nothing twice.
        Assert.Equal(["id: 3", "id: 4"], ids);
    }

    [Fact]
    public async Task RequestArrivingInPieces_IsStillServed()
    {
        var session = NewSession();
        using var raw = await RawConnection.OpenAsync(_gateway.Port);
        await raw.SendAsync($"GET /api/sessions/{session}/ev");
        await Task.Delay(300);
        await raw.SendAsync("ents?clientId=slow HTTP/1.1\r\nHo");
        await Task.Delay(300);
        await raw.SendAsync("st: 127.0.0.1\r\n\r\n");
        var head = await raw.ReadHeadAsync();
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nConnection: close\r\n", head, StringComparison.Ordinal);
        using var reader = new SseReader(raw.Body);
        await ReadUntilAsync(reader, "presence.join");
    }

    [Theory]
    [InlineData("GET /api/sessions/bad%20id/events HTTP/1.1", "invalid_session_id")]
    [InlineData("GET /api/sessions/s1/events?after=x HTTP/1.1", "invalid_position")]
    [InlineData("GET /api/sessions/s1/events?clientId=%3Cscript%3E HTTP/1.1", "invalid_identity")]
    public async Task InvalidWatch_GoesToThePipeline_AndGetsItsProblemDetails(string requestLine, string code)
    {
        using var raw = await RawConnection.OpenAsync(_gateway.Port);
        await raw.SendAsync(requestLine + "\r\nHost: 127.0.0.1\r\n\r\n");
        var head = await raw.ReadHeadAsync();
        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", head, StringComparison.Ordinal);
        Assert.Contains("\r\nContent-Type: application/problem+json\r\n", head, StringComparison.Ordinal);
        Assert.Contains($"\"code\":\"{code}\"", await raw.ReadChunkedBodyAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("HTTP/1.0 watch", "GET /api/sessions/{0}/events?clientId=old HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")]
    [InlineData("no Host", "GET /api/sessions/{0}/events?clientId=nohost HTTP/1.1\r\n\r\n")]
    [InlineData("a body", "GET /api/sessions/{0}/events?clientId=body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{{}}")]
    [InlineData("folded header", "GET /api/sessions/{0}/events?clientId=fold HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n 2\r\n\r\n")]
    public async Task RequestTheLeanPathDoesNotFullyUnderstand_IsLeftToKestrel(string what, string request)
    {
        using var raw = await RawConnection.OpenAsync(_gateway.Port);
        await raw.SendAsync(string.Format(System.Globalization.CultureInfo.InvariantCulture, request, NewSession()));
        var head = await raw.ReadHeadAsync();
        // Kestrel's HTTP layer names itself; the lean path does not.
        Assert.True(head.Contains("\r\nServer: Kestrel\r\n", StringComparison.Ordinal), what + ": not answered by Kestrel's HTTP layer: " + head);
    }

    [Fact]
    public async Task ClosingALeanWatch_EndsItsPresence()
    {
        var session = NewSession();
        using var observerClient = _gateway.CreateClient();
        using var observer = await observerClient.GetAsync($"api/sessions/{session}/events?clientId=observer", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new SseReader(await observer.Content.ReadAsStreamAsync());
        await ReadUntilAsync(reader, "\"id\":\"observer\"");

        var raw = await RawConnection.OpenAsync(_gateway.Port);
        await raw.SendAsync($"GET /api/sessions/{session}/events?clientId=leaver HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200 OK", await raw.ReadHeadAsync(), StringComparison.Ordinal);
        var joined = await ReadUntilAsync(reader, "\"id\":\"leaver\"");
        Assert.Contains("presence.join", string.Join("\n", joined[^1]), StringComparison.Ordinal);

        raw.Dispose();
        var left = await ReadUntilAsync(reader, "\"id\":\"leaver\"");
        Assert.Contains("presence.leave", string.Join("\n", left[^1]), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Shutdown_EndsEveryWatchWithAReason_AndTheGatewayExitsWithoutWaitingForThem()
    {
        var session = NewSession();
        using var leanHandler = new SocketsHttpHandler();
        using var leanClient = new HttpClient(leanHandler) { BaseAddress = _gateway.BaseAddress };
        using var lean = await leanClient.GetAsync($"api/sessions/{session}/events?clientId=a", HttpCompletionOption.ResponseHeadersRead);
        using var pipelineHandler = new SocketsHttpHandler { MaxConnectionsPerServer = 1 };
        using var pipelineClient = new HttpClient(pipelineHandler) { BaseAddress = _gateway.BaseAddress };
        (await pipelineClient.GetAsync("healthz")).EnsureSuccessStatusCode();
        using var pipeline = await pipelineClient.GetAsync($"api/sessions/{session}/events?clientId=b", HttpCompletionOption.ResponseHeadersRead);
        Assert.True(lean.Headers.ConnectionClose);
        Assert.True(pipeline.Headers.TransferEncodingChunked);
        using var leanReader = new SseReader(await lean.Content.ReadAsStreamAsync());
        using var pipelineReader = new SseReader(await pipeline.Content.ReadAsStreamAsync());
        await ReadUntilAsync(leanReader, "\"id\":\"b\"");
        await ReadUntilAsync(pipelineReader, "presence.join");

        // SIGTERM; StopAsync fails if the process is still there 10 s later (the host's shutdown timeout is 30 s).
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await _gateway.StopAsync();
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"stopped after {clock.Elapsed}");
        foreach (var reader in new[] { leanReader, pipelineReader })
        {
            var last = await ReadUntilAsync(reader, ": disconnected: ");
            Assert.Equal([": disconnected: the gateway is shutting down; reconnect"], last[^1]);
            Assert.Null(await reader.NextEventAsync().WaitAsync(Patience));
        }
    }

    [Fact]
    public async Task ConnectionThatSendsNothing_IsClosedByTheServer()
    {
        using var raw = await RawConnection.OpenAsync(_gateway.Port);
        // Lean path's wait (2 s) + Kestrel's keep-alive wait (2 s) + its 1 s heartbeat, with room for a slow machine.
        var read = await raw.Body.ReadAsync(new byte[16]).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(0, read);
    }

    [Fact]
    public async Task OtherRequests_StillWork_OnTheSameListener()
    {
        using var http = _gateway.CreateClient();
        (await http.GetAsync("healthz")).EnsureSuccessStatusCode();
        var session = NewSession();
        using var publish = await http.PostAsJsonAsync($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = "x", ["value"] = 1 });
        publish.EnsureSuccessStatusCode();
        using var info = await http.GetAsync($"api/sessions/{session}");
        Assert.Equal(HttpStatusCode.OK, info.StatusCode);
    }

    [Fact]
    public async Task WithTheLeanPathOff_WatchesGoThroughThePipeline()
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?>
        {
            ["AiStream:DefaultModel"] = "sim",
            ["AiStream:Transports:LeanSseConnections"] = "false",
        });
        using var http = gateway.CreateClient();
        using var response = await http.GetAsync($"api/sessions/{NewSession()}/events?clientId=off", HttpCompletionOption.ResponseHeadersRead);
        Assert.True(response.Headers.TransferEncodingChunked);
        Assert.NotEqual(true, response.Headers.ConnectionClose);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        await ReadUntilAsync(reader, "presence.join");
    }

    private static string NewSession() => "lean-" + Guid.NewGuid().ToString("N")[..10];

    private async Task PublishAsync(string session, string name, int value)
    {
        using var http = _gateway.CreateClient();
        using var response = await http.PostAsJsonAsync($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = name, ["value"] = value });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Events up to and including the first whose text contains <paramref name="marker"/>.</summary>
    private static async Task<List<List<string>>> ReadUntilAsync(SseReader reader, string marker)
    {
        var events = new List<List<string>>();
        while (true)
        {
            var next = await reader.NextEventAsync().WaitAsync(Patience) ?? throw new Xunit.Sdk.XunitException($"the stream ended before {marker}");
            events.Add(next);
            if (string.Join("\n", next).Contains(marker, StringComparison.Ordinal))
            {
                return events;
            }
        }
    }
}
