using System.Diagnostics.Metrics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Providers;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace AiStream.IntegrationTests.Completions;

/// <summary>Usage is counted for every request: from the upstream when it says, by our tokenizer when it does not.</summary>
public sealed class UsageTests
{
    private static JsonObject Body(bool stream = true) => new()
    {
        ["model"] = "gpt-test",
        ["stream"] = stream,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Say something kind" }),
    };

    private static MetricCollector<long> Collector(GatewayFactory gateway) =>
        new(gateway.Services.GetRequiredService<IMeterFactory>(), "AiStream", "gen_ai.client.token.usage");

    private static (long Input, long Output, string Source) Read(MetricCollector<long> collector)
    {
        var snapshot = collector.GetMeasurementSnapshot();
        var input = snapshot.Single(m => (string)m.Tags["gen_ai.token.type"]! == "input");
        var output = snapshot.Single(m => (string)m.Tags["gen_ai.token.type"]! == "output");
        Assert.Equal(input.Tags["aistream.usage.source"], output.Tags["aistream.usage.source"]);
        Assert.Equal("gpt-test", input.Tags["gen_ai.request.model"]);
        return (input.Value, output.Value, (string)input.Tags["aistream.usage.source"]!);
    }

    [Fact]
    public async Task Stream_UpstreamReportsUsage_RecordsItEvenWhenTheClientDidNotAsk()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();
        using var collector = Collector(gateway);

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body());
        var raw = await response.Content.ReadAsStringAsync();
        await collector.WaitForMeasurementsAsync(2, TimeSpan.FromSeconds(5));

        Assert.DoesNotContain("\"prompt_tokens\"", raw, StringComparison.Ordinal);
        var usage = Fixtures.Payloads("openai-chat-text-usage.sse").Select(p => JsonNode.Parse(p)!["usage"]).Last(u => u is not null)!;
        Assert.Equal((usage["prompt_tokens"]!.GetValue<long>(), usage["completion_tokens"]!.GetValue<long>(), "upstream"), Read(collector));
    }

    [Fact]
    public async Task Stream_UpstreamSendsNoUsage_CountsWithTheTokenizer()
    {
        var events = Fixtures.Events("openai-chat-text-usage.sse").Where(e => !e.Contains("\"choices\":[]", StringComparison.Ordinal)).ToList();
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(events));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();
        using var collector = Collector(gateway);

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body());
        await response.Content.ReadAsStringAsync();
        await collector.WaitForMeasurementsAsync(2, TimeSpan.FromSeconds(5));

        var tokens = new TokenCounter();
        var expectedOutput = tokens.Count("I'm sorry, I can't assist with that request.");
        var expectedInput = tokens.CountPrompt([("user", null, "Say something kind")], null);
        Assert.Equal((expectedInput, expectedOutput, "estimated"), Read(collector));
    }

    [Fact]
    public async Task Stream_ClientLeavesMidStream_StillRecordsWhatWasGenerated()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.StallAfter(Fixtures.Events("openai-chat-text-usage-long.sse"), 10));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.Start() };
        using var collector = Collector(gateway);

        using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(Body()) })
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        using (var reader = new SseReader(await response.Content.ReadAsStreamAsync()))
        {
            for (var i = 0; i < 10; i++)
            {
                Assert.NotNull(await reader.NextEventAsync());
            }
        }

        await collector.WaitForMeasurementsAsync(2, TimeSpan.FromSeconds(5));
        var generated = string.Concat(Fixtures.Payloads("openai-chat-text-usage-long.sse").Take(10)
            .Select(p => JsonNode.Parse(p)!["choices"]![0]!["delta"]!["content"]?.GetValue<string>()));
        var (_, output, source) = Read(collector);
        Assert.Equal("estimated", source);
        Assert.Equal(new TokenCounter().Count(generated), output);
    }

    [Fact]
    public async Task NonStream_UpstreamBody_UsageIsRecorded()
    {
        const string completion = """{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}""";
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Json(completion));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();
        using var collector = Collector(gateway);

        using var response = await http.PostAsJsonAsync("v1/chat/completions", Body(stream: false));
        await collector.WaitForMeasurementsAsync(2, TimeSpan.FromSeconds(5));

        Assert.Equal((12L, 1L, "upstream"), Read(collector));
    }
}
