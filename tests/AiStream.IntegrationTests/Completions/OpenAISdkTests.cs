using System.ClientModel;
using System.Text;
using AiStream.IntegrationTests.Infrastructure;
using OpenAI;
using OpenAI.Chat;

namespace AiStream.IntegrationTests.Completions;

/// <summary>The official OpenAI .NET SDK, unmodified, pointed at the gateway.</summary>
public sealed class OpenAISdkTests
{
    private static ChatClient Client(Uri gateway, string model) =>
        new(model, new ApiKeyCredential("any-key"), new OpenAIClientOptions { Endpoint = new Uri(gateway, "v1") });

    [Fact]
    public async Task CompleteChatStreaming_RelayedUpstream_AssemblesTextAndUsage()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        var client = Client(gateway.Start(), "gpt-test");

        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }

        Assert.Equal("I'm sorry, I can't assist with that request.", text.ToString());
        Assert.Equal(ChatFinishReason.Stop, finish);
        Assert.NotNull(usage);
        Assert.Equal(ExpectedUsage("openai-chat-text-usage.sse"), (usage!.InputTokenCount, usage.OutputTokenCount));
    }

    [Fact]
    public async Task CompleteChatStreaming_ParallelToolCalls_AssemblesBothCalls()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-parallel-tool-calls.sse")));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        var client = Client(gateway.Start(), "gpt-test");
        var options = new ChatCompletionOptions { Tools = { ChatTool.CreateFunctionTool("get_weather", "Weather", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}}}""")) } };

        var names = new Dictionary<int, string>();
        var arguments = new Dictionary<int, StringBuilder>();
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("weather in two cities")], options))
        {
            foreach (var call in update.ToolCallUpdates)
            {
                if (call.FunctionName is { } name)
                {
                    names[call.Index] = name;
                }

                (arguments.TryGetValue(call.Index, out var sb) ? sb : arguments[call.Index] = new StringBuilder()).Append(call.FunctionArgumentsUpdate?.ToString());
            }

            finish ??= update.FinishReason;
        }

        var expected = ExpectedToolCalls("openai-chat-parallel-tool-calls.sse");
        Assert.Equal(2, names.Count);
        Assert.Equal(expected.Select(e => e.Name), names.OrderBy(n => n.Key).Select(n => n.Value));
        Assert.Equal(expected.Select(e => e.Arguments), arguments.OrderBy(a => a.Key).Select(a => a.Value.ToString()));
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.Equal("get_weather", Assert.Single(upstream.Requests).Body["tools"]![0]!["function"]!["name"]!.GetValue<string>());
    }

    [Fact]
    public async Task CompleteChatStreaming_SimulatedModel_StreamsProseWordByWordWithUsage()
    {
        await using var gateway = new GatewayFactory(new Dictionary<string, string?>
        {
            ["AiStream:Providers:sim:Type"] = "Simulated",
            ["AiStream:Providers:sim:TokensPerSecond"] = "0",
            ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
        });
        var client = Client(gateway.Start(), "sim");

        var words = new List<string>();
        ChatTokenUsage? usage = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Tell me about streaming gateways")]))
        {
            words.AddRange(update.ContentUpdate.Select(p => p.Text).Where(t => t.Length > 0));
            usage ??= update.Usage;
        }

        Assert.True(words.Count > 20, $"streamed {words.Count} pieces");
        Assert.All(words.Skip(1), w => Assert.StartsWith(" ", w, StringComparison.Ordinal));
        var text = string.Concat(words);
        Assert.EndsWith(".", text, StringComparison.Ordinal);
        Assert.NotNull(usage);
        Assert.True(usage!.OutputTokenCount >= words.Count);
        Assert.True(usage.InputTokenCount > 0);

        // Deterministic: the same prompt gives the same answer.
        var again = new StringBuilder();
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("Tell me about streaming gateways")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                again.Append(part.Text);
            }
        }

        Assert.Equal(text, again.ToString());
    }

    [Fact]
    public async Task CompleteChatStreaming_SimulatedModelOfferedATool_StreamsAToolCall()
    {
        await using var gateway = new GatewayFactory(new Dictionary<string, string?> { ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0" });
        var client = Client(gateway.Start(), "sim");
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", "Current weather", BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""")) },
        };

        string? name = null;
        string? id = null;
        var args = new StringBuilder();
        var argumentPieces = 0;
        ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("What is the weather in Paris?")], options))
        {
            foreach (var call in update.ToolCallUpdates)
            {
                name ??= call.FunctionName;
                id ??= call.ToolCallId;
                if (call.FunctionArgumentsUpdate is { } piece && piece.ToMemory().Length > 0)
                {
                    argumentPieces++;
                    args.Append(piece.ToString());
                }
            }

            finish ??= update.FinishReason;
        }

        Assert.Equal("get_weather", name);
        Assert.StartsWith("call_", id, StringComparison.Ordinal);
        Assert.Equal("""{"city":"Paris"}""", args.ToString());
        Assert.True(argumentPieces > 1, "arguments are streamed in pieces");
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task CompleteChat_NonStreamingSimulated_ReturnsCompletionWithUsage()
    {
        await using var gateway = new GatewayFactory(new Dictionary<string, string?>
        {
            ["AiStream:Providers:sim:TokensPerSecond"] = "0",
            ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
        });
        var client = Client(gateway.Start(), "sim");

        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 8 });

        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.StartsWith("H", completion.Content[0].Text, StringComparison.Ordinal);
        Assert.InRange(completion.Usage.OutputTokenCount, 1, 8);
    }

    [Fact]
    public async Task CompleteChatStreaming_PrimaryUpstreamDown_StreamsFromTheFallbackWithUsage()
    {
        await using var primary = await FakeUpstream.StartAsync(new UpstreamScript.Fail(503));
        await using var secondary = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("vllm-chat-text-usage.sse")));
        var settings = Settings.Compatible(primary.BaseUrl, "gpt-test", "p1");
        foreach (var (key, value) in Settings.Compatible(secondary.BaseUrl, "backup", "p2"))
        {
            settings[key] = value;
        }

        settings["AiStream:Models:gpt-test:Fallbacks:0"] = "backup";
        await using var gateway = new GatewayFactory(settings);
        var client = Client(gateway.Start(), "gpt-test");

        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
        }

        var expected = string.Concat(Fixtures.Payloads("vllm-chat-text-usage.sse")
            .Select(p => System.Text.Json.Nodes.JsonNode.Parse(p)!["choices"]?.AsArray().FirstOrDefault()?["delta"]?["content"]?.GetValue<string>()));
        Assert.Equal(expected, text.ToString());
        Assert.Equal(ExpectedUsage("vllm-chat-text-usage.sse"), (usage!.InputTokenCount, usage.OutputTokenCount));
        Assert.Equal(1, primary.RequestCount);
        Assert.Equal("backup-upstream", Assert.Single(secondary.Requests).Body["model"]!.GetValue<string>());
    }

    [Fact]
    public async Task CompleteChat_UnknownModel_ThrowsWith404()
    {
        await using var gateway = new GatewayFactory();
        var client = Client(gateway.Start(), "no-such-model");

        var ex = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));

        Assert.Equal(404, ex.Status);
        Assert.Contains("no-such-model", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CompleteChatStreaming_ClientCancels_UpstreamSeesTheAbortWithinOneSecond()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage-long.sse"), TimeSpan.FromMilliseconds(50)));
        await using var gateway = new GatewayFactory(Settings.Compatible(upstream.BaseUrl));
        // The SDK's default HttpClient drains an abandoned body for up to 2 s before closing the socket; turn that
        // off so the socket closes when the caller cancels, and the clock starts at the real disconnect.
        using var noDrain = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0, ResponseDrainTimeout = TimeSpan.Zero });
        var client = new ChatClient("gpt-test", new ApiKeyCredential("any-key"), new OpenAIClientOptions
        {
            Endpoint = new Uri(gateway.Start(), "v1"),
            Transport = new System.ClientModel.Primitives.HttpClientPipelineTransport(noDrain),
        });
        using var cts = new CancellationTokenSource();

        var received = 0;
        var cancelledAt = DateTimeOffset.MinValue;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.CompleteChatStreamingAsync([new UserChatMessage("long")], cancellationToken: cts.Token))
            {
                if (++received == 3)
                {
                    cancelledAt = DateTimeOffset.UtcNow;
                    await cts.CancelAsync();
                }
            }
        });

        var abortedAt = await upstream.Aborted.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(abortedAt - cancelledAt < TimeSpan.FromSeconds(1), $"upstream saw the abort after {(abortedAt - cancelledAt).TotalMilliseconds} ms");
    }

    private static (int, int) ExpectedUsage(string fixture)
    {
        var usage = Fixtures.Payloads(fixture).Select(p => System.Text.Json.Nodes.JsonNode.Parse(p)!["usage"]).Last(u => u is not null)!;
        return (usage["prompt_tokens"]!.GetValue<int>(), usage["completion_tokens"]!.GetValue<int>());
    }

    private static List<(string Name, string Arguments)> ExpectedToolCalls(string fixture)
    {
        var names = new SortedDictionary<int, string>();
        var args = new SortedDictionary<int, StringBuilder>();
        foreach (var payload in Fixtures.Payloads(fixture))
        {
            if (System.Text.Json.Nodes.JsonNode.Parse(payload)!["choices"] is System.Text.Json.Nodes.JsonArray { Count: > 0 } choices
                && choices[0]!["delta"]?["tool_calls"] is System.Text.Json.Nodes.JsonArray calls)
            {
                foreach (var call in calls)
                {
                    var index = call!["index"]!.GetValue<int>();
                    if (call["function"]?["name"] is { } name)
                    {
                        names[index] = name.GetValue<string>();
                    }

                    (args.TryGetValue(index, out var sb) ? sb : args[index] = new StringBuilder()).Append(call["function"]?["arguments"]?.GetValue<string>());
                }
            }
        }

        return names.Select(n => (n.Value, args[n.Key].ToString())).ToList();
    }
}
