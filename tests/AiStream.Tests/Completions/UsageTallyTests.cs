using System.Text;
using System.Text.Json;
using AiStream.Gateway.Completions;

namespace AiStream.Tests.Completions;

public sealed class UsageTallyTests
{
    public static TheoryData<string> ChatFixtures =>
    [
        "openai-chat-text-usage",
        "openai-chat-text-usage-long",
        "openai-chat-parallel-tool-calls",
        "azure-chat-content-filter",
        "deepseek-chat-reasoning",
        "vllm-chat-text-usage",
    ];

    [Theory]
    [MemberData(nameof(ChatFixtures))]
    public void Inspect_RecordedStream_FlagsEachChunkLikeItsJson(string fixture)
    {
        var payloads = ProviderFixtures.Payloads(fixture);
        using var tally = new UsageTally();

        var flags = payloads.Select(p => tally.Inspect(Encoding.UTF8.GetBytes(p))).ToList();

        Assert.Equal(payloads.Select(ExpectedFlags), flags);
        Assert.DoesNotContain(flags, f => f.HasFlag(ChunkFlags.Error));
        Assert.False(tally.SawError);
    }

    [Theory]
    [MemberData(nameof(ChatFixtures))]
    public void Inspect_RecordedStream_ReadsUsageOfTheUsageChunk(string fixture)
    {
        var payloads = ProviderFixtures.Payloads(fixture);
        using var tally = new UsageTally();

        foreach (var payload in payloads)
        {
            tally.Inspect(Encoding.UTF8.GetBytes(payload));
        }

        var usageChunks = payloads.Select(p => JsonDocument.Parse(p)).Where(d => d.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object).ToList();
        if (fixture == "azure-chat-content-filter")
        {
            // Azure sent no usage in this recording.
            Assert.Empty(usageChunks);
            Assert.Null(tally.PromptTokens);
            Assert.Null(tally.CompletionTokens);
            return;
        }

        var usage = Assert.Single(usageChunks).RootElement.GetProperty("usage");
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt64(), tally.PromptTokens);
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt64(), tally.CompletionTokens);
        Assert.True(tally.PromptTokens > 0);
        Assert.True(tally.CompletionTokens > 0);
    }

    [Theory]
    [MemberData(nameof(ChatFixtures))]
    public void Inspect_RecordedStream_SeesFinishReason(string fixture)
    {
        var payloads = ProviderFixtures.Payloads(fixture);
        using var tally = new UsageTally();
        var lastFinished = -1;

        for (var i = 0; i < payloads.Count; i++)
        {
            if (tally.Inspect(Encoding.UTF8.GetBytes(payloads[i])).HasFlag(ChunkFlags.Finished))
            {
                lastFinished = i;
            }
        }

        Assert.True(tally.SawFinish);
        Assert.True(lastFinished > 0);
        var choice = JsonDocument.Parse(payloads[lastFinished]).RootElement.GetProperty("choices")[0];
        Assert.Equal(JsonValueKind.String, choice.GetProperty("finish_reason").ValueKind);
    }

    [Theory]
    [MemberData(nameof(ChatFixtures))]
    public void Inspect_RecordedStream_CollectsAllGeneratedText(string fixture)
    {
        var payloads = ProviderFixtures.Payloads(fixture);
        using var tally = new UsageTally();

        foreach (var payload in payloads)
        {
            tally.Inspect(Encoding.UTF8.GetBytes(payload));
        }

        var expected = string.Concat(payloads.Select(ExpectedText));
        Assert.NotEmpty(expected);
        Assert.Equal(expected, tally.GeneratedText.ToString());
    }

    [Fact]
    public void Inspect_OpenAIUsageOnlyChunk_IsHasUsageAndEmptyChoices()
    {
        var payloads = ProviderFixtures.Payloads("openai-chat-text-usage");
        using var tally = new UsageTally();

        var flags = tally.Inspect(Encoding.UTF8.GetBytes(payloads[^1]));

        Assert.Equal(ChunkFlags.HasUsage | ChunkFlags.EmptyChoices, flags);
        Assert.Equal(26, tally.PromptTokens);
        Assert.Equal(10, tally.CompletionTokens);
    }

    [Fact]
    public void Inspect_AzurePromptFilterChunk_IsEmptyChoicesWithoutUsage()
    {
        var payloads = ProviderFixtures.Payloads("azure-chat-content-filter");
        using var tally = new UsageTally();

        var flags = tally.Inspect(Encoding.UTF8.GetBytes(payloads[0]));

        Assert.Contains("prompt_filter_results", payloads[0], StringComparison.Ordinal);
        Assert.Equal(ChunkFlags.EmptyChoices, flags);
        Assert.Null(tally.PromptTokens);
        Assert.Equal(0, tally.GeneratedText.Length);
    }

    [Fact]
    public void Inspect_DeepSeekFinishChunkWithUsage_IsFinishedAndHasUsage()
    {
        var payloads = ProviderFixtures.Payloads("deepseek-chat-reasoning");
        using var tally = new UsageTally();

        var flags = tally.Inspect(Encoding.UTF8.GetBytes(payloads[^1]));

        Assert.Equal(ChunkFlags.HasUsage | ChunkFlags.Finished, flags);
        Assert.Equal(6, tally.PromptTokens);
        Assert.Equal(212, tally.CompletionTokens);
    }

    [Theory]
    [InlineData("""{"error":{"message":"x"}}""")]
    [InlineData("""{"error":"overloaded"}""")]
    [InlineData("""{"id":"1","error":{"message":"x","type":"server_error","code":null},"choices":[]}""")]
    public void Inspect_ErrorChunk_IsError(string json)
    {
        using var tally = new UsageTally();

        var flags = tally.Inspect(Encoding.UTF8.GetBytes(json));

        Assert.True(flags.HasFlag(ChunkFlags.Error));
        Assert.False(flags.HasFlag(ChunkFlags.HasUsage));
        Assert.True(tally.SawError);
    }

    [Fact]
    public void Inspect_NullError_IsNotError()
    {
        using var tally = new UsageTally();

        var flags = tally.Inspect("""{"error":null,"choices":[{"delta":{"content":"a"}}]}"""u8);

        Assert.Equal(ChunkFlags.None, flags);
        Assert.False(tally.SawError);
        Assert.Equal("a", tally.GeneratedText.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("{")]
    [InlineData("""{"choices":[{"delta":{"content":"abc""")]
    [InlineData("""{"usage":{"prompt_tokens":}}""")]
    [InlineData("[1,2,3]")]
    [InlineData("\"just a string\"")]
    public void Inspect_MalformedOrNonObjectJson_DoesNotThrow(string json)
    {
        using var tally = new UsageTally();

        var flags = tally.Inspect(Encoding.UTF8.GetBytes(json));

        Assert.False(flags.HasFlag(ChunkFlags.Error));
        Assert.False(flags.HasFlag(ChunkFlags.Finished));
        Assert.Null(tally.PromptTokens);
        Assert.Null(tally.CompletionTokens);
        Assert.False(tally.SawError);
    }

    [Fact]
    public void Inspect_InvalidUtf8InContent_DoesNotThrow()
    {
        using var tally = new UsageTally();
        byte[] json = [.. "{\"choices\":[{\"delta\":{\"content\":\"ab"u8, 0xFF, 0xFE, .. "\"}}]}"u8];

        var exception = Record.Exception(() => tally.Inspect(json));

        Assert.Null(exception);
        Assert.False(tally.SawError);
        Assert.StartsWith("ab", tally.GeneratedText.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Inspect_MalformedChunkBetweenGoodOnes_KeepsCounting()
    {
        using var tally = new UsageTally();

        tally.Inspect("""{"choices":[{"delta":{"content":"Hel"}}]}"""u8);
        tally.Inspect("""{"choices":[{"delta":{"content":"""u8);
        tally.Inspect("""{"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"""u8);

        Assert.Equal("Hello", tally.GeneratedText.ToString());
        Assert.Equal(3, tally.PromptTokens);
        Assert.Equal(2, tally.CompletionTokens);
        Assert.True(tally.SawFinish);
    }

    [Fact]
    public void Inspect_EscapedAndMultibyteText_IsUnescaped()
    {
        using var tally = new UsageTally();

        tally.Inspect("""{"choices":[{"delta":{"content":"caf\u00e9 \"q\"\n","refusal":"nö"}}]}"""u8);

        Assert.Equal("café \"q\"\nnö", tally.GeneratedText.ToString());
    }

    [Fact]
    public void Inspect_TextLongerThanInitialBuffer_GrowsAndKeepsEverything()
    {
        using var tally = new UsageTally();
        var piece = new string('x', 700);
        var expected = new StringBuilder();

        for (var i = 0; i < 10; i++)
        {
            var content = $"{i}{piece}";
            expected.Append(content);
            tally.Inspect(Encoding.UTF8.GetBytes($$$"""{"choices":[{"delta":{"content":"{{{content}}}"}}]}"""));
        }

        Assert.Equal(expected.ToString(), tally.GeneratedText.ToString());
    }

    /// <summary>The flags a chunk should get, read with a DOM rather than the tally's forward-only reader.</summary>
    private static ChunkFlags ExpectedFlags(string payload)
    {
        using var document = JsonDocument.Parse(payload);
        var root = document.RootElement;
        var flags = ChunkFlags.None;
        if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
        {
            flags |= ChunkFlags.HasUsage;
        }

        if (root.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array)
        {
            if (choices.GetArrayLength() == 0)
            {
                flags |= ChunkFlags.EmptyChoices;
            }

            if (choices.EnumerateArray().Any(c => c.TryGetProperty("finish_reason", out var f) && f.ValueKind == JsonValueKind.String))
            {
                flags |= ChunkFlags.Finished;
            }
        }

        if (root.TryGetProperty("error", out var error) && error.ValueKind is JsonValueKind.Object or JsonValueKind.String)
        {
            flags |= ChunkFlags.Error;
        }

        return flags;
    }

    /// <summary>Content, reasoning, refusal and tool-call name and arguments of a chunk, in document order.</summary>
    private static string ExpectedText(string payload)
    {
        using var document = JsonDocument.Parse(payload);
        var text = new StringBuilder();
        if (!document.RootElement.TryGetProperty("choices", out var choices))
        {
            return string.Empty;
        }

        foreach (var choice in choices.EnumerateArray())
        {
            if (!choice.TryGetProperty("delta", out var delta) || delta.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            foreach (var property in delta.EnumerateObject())
            {
                if (property.Name is "content" or "reasoning_content" or "refusal" && property.Value.ValueKind == JsonValueKind.String)
                {
                    text.Append(property.Value.GetString());
                }
                else if (property.Name == "tool_calls")
                {
                    foreach (var call in property.Value.EnumerateArray())
                    {
                        if (!call.TryGetProperty("function", out var function))
                        {
                            continue;
                        }

                        foreach (var field in function.EnumerateObject())
                        {
                            if (field.Name is "name" or "arguments")
                            {
                                text.Append(field.Value.GetString());
                            }
                        }
                    }
                }
            }
        }

        return text.ToString();
    }
}

/// <summary>The recorded real provider streams in tests/fixtures/providers, inside the repository.</summary>
internal static class ProviderFixtures
{
    private static readonly Lazy<string> Directory = new(Locate);

    /// <summary>The JSON text after <c>data: </c> of every data line, <c>[DONE]</c> left out; CRLF or LF.</summary>
    public static List<string> Payloads(string name)
    {
        var path = Path.Combine(Directory.Value, name + ".sse");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Recorded provider stream {path} is missing.", path);
        }

        var payloads = File.ReadAllText(path, Encoding.UTF8)
            .Split('\n')
            .Select(line => line.TrimEnd('\r'))
            .Where(line => line.StartsWith("data:", StringComparison.Ordinal))
            .Select(line => line["data:".Length..])
            .Select(payload => payload.StartsWith(' ') ? payload[1..] : payload)
            .Where(payload => payload != "[DONE]")
            .ToList();
        if (payloads.Count < 3)
        {
            throw new InvalidDataException($"{path} holds only {payloads.Count} data payloads.");
        }

        return payloads;
    }

    private static string Locate()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "AiStream.sln")))
            {
                var fixtures = Path.GetFullPath(Path.Combine(dir.FullName, "tests", "fixtures", "providers"));
                return System.IO.Directory.Exists(fixtures)
                    ? fixtures
                    : throw new DirectoryNotFoundException($"Recorded provider streams not found at {fixtures}.");
            }
        }

        throw new DirectoryNotFoundException("AiStream.sln not found above " + AppContext.BaseDirectory);
    }
}
