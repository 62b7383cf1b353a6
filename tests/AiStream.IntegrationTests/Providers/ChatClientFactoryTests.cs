using System.Text;
using AiStream.Gateway.Providers;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace AiStream.IntegrationTests.Providers;

/// <summary>The IChatClient path, used where the gateway itself consumes model output.</summary>
public sealed class ChatClientFactoryTests
{
    [Fact]
    public async Task Get_OpenAICompatible_StreamsTheUpstreamTextThroughMicrosoftExtensionsAI()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("vllm-chat-text-usage.sse")));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        gateway.Start();
        var client = gateway.Services.GetRequiredService<ChatClientFactory>().Get("gpt-test");

        var text = new StringBuilder();
        UsageDetails? usage = null;
        await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "hi")]))
        {
            text.Append(update.Text);
            usage ??= update.Contents.OfType<UsageContent>().FirstOrDefault()?.Details;
        }

        var expected = string.Concat(Fixtures.Payloads("vllm-chat-text-usage.sse")
            .Select(p => System.Text.Json.Nodes.JsonNode.Parse(p)!["choices"]?.AsArray().FirstOrDefault()?["delta"]?["content"]?.GetValue<string>()));
        Assert.Equal(expected, text.ToString());
        Assert.NotNull(usage);
        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("gpt-test-upstream", sent.Body["model"]!.GetValue<string>());
        Assert.Equal("Bearer sk-test", sent.Headers.Authorization.ToString());
    }

    [Fact]
    public async Task Get_AzureOpenAI_CallsTheDeploymentWithTheApiKey()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("azure-chat-content-filter.sse")));
        await using var gateway = new GatewayFactory(new Dictionary<string, string?>
        {
            ["AiStream:Providers:azure:Type"] = "AzureOpenAI",
            ["AiStream:Providers:azure:Endpoint"] = upstream.Root,
            ["AiStream:Providers:azure:ApiKey"] = "azure-key",
            ["AiStream:Providers:azure:Deployment"] = "dep1",
            ["AiStream:Models:gpt-4o:Provider"] = "azure",
        });
        gateway.Start();
        var client = gateway.Services.GetRequiredService<ChatClientFactory>().Get("gpt-4o");

        var text = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "hi")]))
        {
            text.Append(update.Text);
        }

        Assert.NotEmpty(text.ToString());
        var sent = Assert.Single(upstream.Requests);
        Assert.Equal("/openai/deployments/dep1/chat/completions", sent.Path);
        Assert.Equal("azure-key", sent.Headers["api-key"].ToString());
    }

    [Fact]
    public async Task Get_Simulated_IsTheSimulatedChatClient()
    {
        await using var gateway = new GatewayFactory(new Dictionary<string, string?> { ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0", ["AiStream:Providers:sim:TokensPerSecond"] = "0" });
        gateway.Start();
        var client = gateway.Services.GetRequiredService<ChatClientFactory>().Get("sim");

        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "hello there")]);

        Assert.Equal("aistream-simulated", client.GetService<ChatClientMetadata>()!.ProviderName);
        Assert.True(response.Text.Split(' ').Length > 20);
        Assert.True(response.Usage!.OutputTokenCount > 0);
    }
}
