using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.IntegrationTests.Completions;

/// <summary>Time-to-first-token and idle timeouts and the heartbeats, driven by a FakeTimeProvider instead of sleeping.</summary>
public sealed class TimeoutTests
{
    private static JsonObject Body() => new()
    {
        ["model"] = "gpt-test",
        ["stream"] = true,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
    };

    /// <summary>Advances fake time a step at a time until <paramref name="task"/> completes, as a gateway timer would see it.</summary>
    private static async Task<T> AdvanceUntil<T>(FakeTimeProvider time, Task<T> task, TimeSpan step, int maxSteps = 60)
    {
        for (var i = 0; i < maxSteps && !task.IsCompleted; i++)
        {
            await Task.WhenAny(task, Task.Delay(30));
            if (!task.IsCompleted)
            {
                time.Advance(step);
            }
        }

        return await task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Stream_NoFirstTokenInTime_Answers504BeforeAnyHeartbeat()
    {
        var time = new FakeTimeProvider();
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.StallAfter([], 0));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl)
            .With("AiStream:Models:gpt-test:TimeToFirstTokenTimeoutSeconds", 5)
            .With("AiStream:Completions:HeartbeatDelaySeconds", 30), time);
        using var http = gateway.Http();

        var send = http.PostAsJsonAsync("v1/chat/completions", Body());
        await upstream.FirstRequest.WaitAsync(TimeSpan.FromSeconds(10));
        // Just short of the timeout nothing happens; reaching it answers without any more fake time passing.
        time.Advance(TimeSpan.FromSeconds(4.9));
        await Task.WhenAny(send, Task.Delay(200));
        Assert.False(send.IsCompleted, "answered before the time-to-first-token timeout");
        time.Advance(TimeSpan.FromSeconds(0.1));
        using var response = await send.WaitAsync(TimeSpan.FromSeconds(10));
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(504, (int)response.StatusCode);
        Assert.Equal("upstream_timeout", problem!["error"]!["code"]!.GetValue<string>());
        await upstream.Aborted.WaitAsync(TimeSpan.FromSeconds(5)); // the stalled upstream request was cancelled
    }

    [Fact]
    public async Task Stream_SlowFirstToken_SendsHeartbeatsThenAnErrorEvent()
    {
        var time = new FakeTimeProvider();
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.StallAfter([], 0));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl)
            .With("AiStream:Models:gpt-test:TimeToFirstTokenTimeoutSeconds", 10)
            .With("AiStream:Completions:HeartbeatDelaySeconds", 2)
            .With("AiStream:Completions:HeartbeatIntervalSeconds", 3), time);
        using var http = gateway.Http();

        var start = time.GetUtcNow();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(Body()) };
        var send = http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await upstream.FirstRequest.WaitAsync(TimeSpan.FromSeconds(10));
        // Headers only go out with the first heartbeat, two seconds in: not before, and then without more time passing.
        time.Advance(TimeSpan.FromSeconds(1.9));
        await Task.WhenAny(send, Task.Delay(200));
        Assert.False(send.IsCompleted, "committed to a 200 before the heartbeat delay");
        time.Advance(TimeSpan.FromSeconds(0.1));
        using var response = await send.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(2), time.GetUtcNow() - start);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        var events = await AdvanceUntil(time, reader.ReadAllAsync(), TimeSpan.FromSeconds(1));

        var heartbeats = events.TakeWhile(e => e[0].StartsWith(':')).Count();
        Assert.InRange(heartbeats, 3, 4); // at 2 s, 5 s, 8 s (and the 11 s one only if it won the race with the 10 s timeout)
        var data = events.Skip(heartbeats).Select(e => Assert.Single(e)).ToList();
        Assert.Equal(2, data.Count);
        Assert.Equal("upstream_timeout", JsonNode.Parse(data[0]["data: ".Length..])!["error"]!["code"]!.GetValue<string>());
        Assert.Equal("data: [DONE]", data[1]);
    }

    [Fact]
    public async Task Stream_UpstreamGoesSilentMidStream_IdleTimeoutEndsWithErrorEvent()
    {
        var time = new FakeTimeProvider();
        var fixture = Fixtures.Events("openai-chat-text-usage-long.sse");
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.StallAfter(fixture, 3));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl)
            .With("AiStream:Models:gpt-test:IdleTimeoutSeconds", 5), time);
        using var http = gateway.Http();

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(Body()) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("data: " + Fixtures.Payloads("openai-chat-text-usage-long.sse")[i], Assert.Single((await reader.NextEventAsync())!));
        }

        var rest = await AdvanceUntil(time, reader.ReadAllAsync(), TimeSpan.FromSeconds(1));

        Assert.Equal(2, rest.Count);
        Assert.Equal("upstream_idle_timeout", JsonNode.Parse(rest[0][0]["data: ".Length..])!["error"]!["code"]!.GetValue<string>());
        Assert.Equal("data: [DONE]", rest[1][0]);
        Assert.Equal(1, upstream.RequestCount);
    }
}
