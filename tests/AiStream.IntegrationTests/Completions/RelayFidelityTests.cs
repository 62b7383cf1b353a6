using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Completions;

/// <summary>Recorded real provider streams pass through the gateway unchanged.</summary>
public sealed class RelayFidelityTests
{
    public static TheoryData<string> ChatFixtures =>
    [
        "openai-chat-text-usage.sse",
        "openai-chat-text-usage-long.sse",
        "openai-chat-parallel-tool-calls.sse",
        "azure-chat-content-filter.sse",
        "deepseek-chat-reasoning.sse",
        "vllm-chat-text-usage.sse",
    ];

    [Theory]
    [MemberData(nameof(ChatFixtures))]
    public async Task Stream_WithIncludeUsage_RelaysEveryUpstreamChunkByteForByte(string fixture)
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events(fixture)));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "gpt-test",
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        var raw = await response.Content.ReadAsStringAsync();

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("no", response.Headers.GetValues("X-Accel-Buffering").Single());
        Assert.Empty(response.Content.Headers.ContentEncoding);
        Assert.DoesNotContain("\r", raw, StringComparison.Ordinal);
        Assert.Equal(Fixtures.Payloads(fixture), Fixtures.DataPayloads(raw));
        Assert.EndsWith("data: [DONE]\n\n", raw, StringComparison.Ordinal);
        Assert.Equal(1, Count(raw, "data: [DONE]"));
    }

    [Theory]
    [InlineData("openai-chat-text-usage.sse")]
    [InlineData("openai-chat-parallel-tool-calls.sse")]
    [InlineData("vllm-chat-text-usage.sse")]
    public async Task Stream_WithoutIncludeUsage_DropsOnlyTheUsageChunkTheGatewayAskedFor(string fixture)
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events(fixture)));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "gpt-test",
            ["stream"] = true,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        var raw = await response.Content.ReadAsStringAsync();

        var expected = Fixtures.Payloads(fixture).Where(p => !IsUsageOnly(p)).ToList();
        Assert.True(expected.Count < Fixtures.Payloads(fixture).Count, "the fixture has a usage-only chunk");
        Assert.Equal(expected, Fixtures.DataPayloads(raw));
        Assert.EndsWith("data: [DONE]\n\n", raw, StringComparison.Ordinal);

        // The gateway asked the upstream for usage all the same, and for the configured upstream model.
        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("gpt-test-upstream", sent.Body["model"]!.GetValue<string>());
        Assert.True(sent.Body["stream_options"]!["include_usage"]!.GetValue<bool>());
        Assert.Equal("Bearer sk-test", sent.Headers.Authorization.ToString());
    }

    [Fact]
    public async Task Stream_UnknownRequestFields_ReachTheUpstreamUntouched()
    {
        await using var upstream = await FakeUpstream.StartAsync();
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "gpt-test",
            ["stream"] = true,
            ["reasoning_effort"] = "low",
            ["metadata"] = new JsonObject { ["team"] = "a" },
            ["stream_options"] = new JsonObject { ["include_obfuscation"] = false },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        await response.Content.ReadAsStringAsync();

        var body = Assert.Single(upstream.Requests).Body;
        Assert.Equal("low", body["reasoning_effort"]!.GetValue<string>());
        Assert.Equal("a", body["metadata"]!["team"]!.GetValue<string>());
        Assert.False(body["stream_options"]!["include_obfuscation"]!.GetValue<bool>());
        Assert.True(body["stream_options"]!["include_usage"]!.GetValue<bool>());
    }

    [Fact]
    public async Task Stream_AzureProvider_UsesDeploymentUrlAndApiKeyHeader()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("azure-chat-content-filter.sse")));
        var settings = new Dictionary<string, string?>
        {
            ["AiStream:Providers:azure:Type"] = "AzureOpenAI",
            ["AiStream:Providers:azure:Endpoint"] = upstream.Root,
            ["AiStream:Providers:azure:ApiKey"] = "azure-key",
            ["AiStream:Providers:azure:Deployment"] = "gpt-4o-deploy",
            ["AiStream:Models:gpt-4o:Provider"] = "azure",
        };
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "gpt-4o",
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        var raw = await response.Content.ReadAsStringAsync();

        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("/openai/deployments/gpt-4o-deploy/chat/completions", sent.Path);
        Assert.Equal("?api-version=2024-10-21", sent.Query);
        Assert.Equal("azure-key", sent.Headers["api-key"].ToString());
        Assert.Equal(Fixtures.Payloads("azure-chat-content-filter.sse"), Fixtures.DataPayloads(raw));
        Assert.Contains("prompt_filter_results", Fixtures.DataPayloads(raw)[0], StringComparison.Ordinal);
    }

    [Fact]
    public async Task NonStream_RelaysTheUpstreamBodyAndStripsStreamOptions()
    {
        const string completion = """{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there","reasoning_content":"think"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11},"vendor_extra":{"a":1}}""";
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Json(completion));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Http();

        using var response = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "gpt-test",
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });

        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(completion, await response.Content.ReadAsStringAsync());
        Assert.Equal("gpt-test", response.Headers.GetValues("X-AiStream-Model").Single());
        Assert.Null(Assert.Single(upstream.Requests).Body["stream_options"]);
    }

    private static bool IsUsageOnly(string payload)
    {
        var node = JsonNode.Parse(payload)!;
        return node["choices"] is JsonArray { Count: 0 } && node["usage"] is JsonObject;
    }

    private static int Count(string text, string value)
    {
        var count = 0;
        for (var i = text.IndexOf(value, StringComparison.Ordinal); i >= 0; i = text.IndexOf(value, i + value.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
