using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;

namespace AiStream.IntegrationTests.Deploy;

/// <summary>The gateway behind real nginx running <c>deploy/nginx/nginx.conf</c>: streams arrive unbuffered and both SignalR transports work.</summary>
public sealed class NginxTests
{
    private static JsonObject Custom(string name) => new() { ["type"] = "CUSTOM", ["name"] = name, ["value"] = 1 };

    [Fact]
    public async Task SessionWatch_ThroughNginx_DeliversEachEventBeforeTheNextIsPublished()
    {
        await using var gateway = new GatewayFactory();
        var direct = gateway.Start();
        await using var nginx = await NginxProxy.StartAsync(direct);
        using var viaNginx = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = nginx.BaseAddress };
        using var toGateway = new HttpClient { BaseAddress = direct };
        var session = "nginx-" + Guid.NewGuid().ToString("N")[..8];

        using var response = await viaNginx.GetAsync($"api/sessions/{session}/events?clientId=n1", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);

        // Snapshot frames and the watcher's own join first.
        var seen = new List<string>();
        while (!string.Join("\n", seen).Contains("presence.join", StringComparison.Ordinal))
        {
            seen.AddRange((await reader.NextEventAsync().WaitAsync(TimeSpan.FromSeconds(10)))!);
        }

        for (var i = 0; i < 5; i++)
        {
            using var publish = await toGateway.PostAsJsonAsync($"api/sessions/{session}/events", Custom("n" + i));
            publish.EnsureSuccessStatusCode();
            var frame = await reader.NextEventAsync().WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Contains(frame!, l => l.Contains($"\"name\":\"n{i}\"", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Completions_ThroughNginx_FirstChunkArrivesBeforeTheUpstreamSendsTheRest()
    {
        var events = Fixtures.Events("openai-chat-text-usage.sse");
        using var gate = new SemaphoreSlim(0);
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Gated(events, gate));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        await using var nginx = await NginxProxy.StartAsync(gateway.Start());
        using var http = new HttpClient { BaseAddress = nginx.BaseAddress };

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = JsonContent.Create(new JsonObject
            {
                ["model"] = "gpt-test",
                ["stream"] = true,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
            }),
        };
        var send = http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        gate.Release();
        using var response = await send.WaitAsync(TimeSpan.FromSeconds(10));
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());

        var first = await reader.NextEventAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("data: " + Fixtures.Payloads("openai-chat-text-usage.sse")[0], Assert.Single(first!));
        gate.Release(events.Count);
        var rest = await reader.ReadAllAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("data: [DONE]", rest[^1][0]);
    }

    [Theory]
    [InlineData(HttpTransportType.WebSockets)]
    [InlineData(HttpTransportType.LongPolling)]
    public async Task Hub_ThroughNginx_JoinsAndReceivesEvents(HttpTransportType transport)
    {
        await using var gateway = new GatewayFactory();
        await using var nginx = await NginxProxy.StartAsync(gateway.Start());
        var session = "nginx-hub-" + Guid.NewGuid().ToString("N")[..8];
        var received = Channel.CreateUnbounded<JsonElement>();
        await using var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(nginx.BaseAddress, "hubs/sessions?clientId=h1"), options => options.Transports = transport)
            .Build();
        connection.On<string, JsonElement>("Event", (sid, e) =>
        {
            if (sid == session)
            {
                received.Writer.TryWrite(e);
            }
        });

        await connection.StartAsync();
        await connection.InvokeAsync<JsonElement>("Join", session, (long?)null);
        var seq = await connection.InvokeAsync<long>("Publish", session, Custom("via-" + transport));

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        JsonElement e;
        do
        {
            e = await received.Reader.ReadAsync(timeout.Token);
        }
        while (!e.TryGetProperty("seq", out var s) || s.GetInt64() != seq);

        Assert.Equal("via-" + transport, e.GetProperty("name").GetString());
    }
}
