using System.Text.Json;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Providers.Simulated;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.Tests.Providers.Simulated;

public sealed class SimulatedChatClientTests
{
    // Loading the o200k vocabulary is slow; share one counter across the tests of this class.
    private static readonly TokenCounter Tokens = new();

    private static readonly JsonElement WeatherSchema = JsonDocument.Parse(
        """{"type":"object","properties":{"city":{"type":"string","description":"City name"}},"required":["city"]}""").RootElement.Clone();

    private readonly FakeTimeProvider _time = new();

    [Fact]
    public async Task GetStreamingResponseAsync_SamePromptTwice_StreamsIdenticalText()
    {
        using var client = Client();

        var first = await Collect(client, "Explain circuit breakers in distributed systems");
        var second = await Collect(client, "Explain circuit breakers in distributed systems");

        Assert.Equal(Texts(first), Texts(second));
        Assert.NotEmpty(Texts(first));
    }

    [Fact]
    public async Task GetStreamingResponseAsync_DifferentPrompts_StreamDifferentText()
    {
        using var client = Client();

        var first = string.Concat(Texts(await Collect(client, "Explain circuit breakers in distributed systems")));
        var second = string.Concat(Texts(await Collect(client, "Describe sourdough baking at home")));

        Assert.NotEqual(first, second);
    }

    [Theory]
    [InlineData("Explain circuit breakers in distributed systems")]
    [InlineData("Describe sourdough baking at home")]
    [InlineData("hello")]
    [InlineData("hi")]
    [InlineData("ok")]
    [InlineData("yo")]
    [InlineData("?")]
    [InlineData("Hello")]
    [InlineData("HELLO")]
    [InlineData("hello.")]
    [InlineData("hi!")]
    [InlineData("")]
    public async Task GetStreamingResponseAsync_AnyPrompt_StreamsProseWordByWord(string prompt)
    {
        using var client = Client();

        var words = Texts(await Collect(client, prompt));
        var text = string.Concat(words);

        Assert.True(words.Count >= 20, $"only {words.Count} words: {text}");
        Assert.Matches(@"^\S+$", words[0]);
        Assert.All(words.Skip(1), w => Assert.Matches(@"^ \S+$", w));
        Assert.EndsWith(".", text, StringComparison.Ordinal);
        Assert.DoesNotContain("  ", text, StringComparison.Ordinal);
        var sentences = text.Split(['.', '!', '?'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(sentences.Length >= 4, $"only {sentences.Length} sentences: {text}");
    }

    [Theory]
    [InlineData("")]
    [InlineData("?")]
    [InlineData("yo")]
    [InlineData("hi!")]
    public async Task GetStreamingResponseAsync_PromptWithoutTopic_StartsEverySentenceWithCapital(string prompt)
    {
        using var client = Client();

        var text = string.Concat(Texts(await Collect(client, prompt)));

        var sentences = text.Split(['.', '!', '?'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.All(sentences, s => Assert.True(char.IsUpper(s[0]), $"sentence does not start with a capital: '{s}'"));
    }

    [Fact]
    public async Task GetStreamingResponseAsync_Prompt_OpensWithTopicFromPrompt()
    {
        using var client = Client();

        var text = string.Concat(Texts(await Collect(client, "Explain circuit breakers in distributed systems")));

        Assert.Contains("Circuit breakers distributed systems", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_BeforeTimeToFirstToken_YieldsNothing()
    {
        using var client = Client(new ProviderOptions { Type = ProviderTypes.Simulated, TimeToFirstTokenMs = 500, TokensPerSecond = 0 });
        await using var updates = client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Explain retries")]).GetAsyncEnumerator();

        var first = updates.MoveNextAsync();
        Assert.False(first.IsCompleted);

        _time.Advance(TimeSpan.FromMilliseconds(499));
        Assert.False(first.IsCompleted);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(await first.AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(string.IsNullOrEmpty(updates.Current.Text));
    }

    [Fact]
    public async Task GetStreamingResponseAsync_CancelledBeforeFirstToken_Throws()
    {
        using var client = Client(new ProviderOptions { Type = ProviderTypes.Simulated, TimeToFirstTokenMs = 500, TokensPerSecond = 0 });
        using var cts = new CancellationTokenSource();
        await using var updates = client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Explain retries")], cancellationToken: cts.Token).GetAsyncEnumerator();

        var first = updates.MoveNextAsync();
        Assert.False(first.IsCompleted);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first.AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task GetStreamingResponseAsync_TenTokensPerSecond_SecondWordWaitsAnother100Ms()
    {
        using var client = Client(new ProviderOptions { Type = ProviderTypes.Simulated, TimeToFirstTokenMs = 200, TokensPerSecond = 10 });
        await using var updates = client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Explain retries")]).GetAsyncEnumerator();

        var first = updates.MoveNextAsync();
        _time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.True(await first.AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        var firstWord = updates.Current.Text;

        var second = updates.MoveNextAsync();
        Assert.False(second.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.False(second.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(await second.AsTask().WaitAsync(TimeSpan.FromSeconds(10)));

        Assert.StartsWith(" ", updates.Current.Text, StringComparison.Ordinal);
        Assert.NotEqual(firstWord, updates.Current.Text);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_Unpaced_CompletesWithoutAdvancingTime()
    {
        using var client = Client();
        var start = _time.GetUtcNow();

        var updates = await Collect(client, "Explain retries");

        Assert.True(updates.Count > 2);
        Assert.Equal(start, _time.GetUtcNow());
    }

    [Fact]
    public async Task GetStreamingResponseAsync_ToolOfferedAndAskedFor_StreamsOneToolCall()
    {
        using var client = Client();
        var options = new ChatOptions { Tools = [WeatherTool()] };

        var updates = await Collect(client, "What is the weather in Paris?", options);

        var call = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.StartsWith("call_", call.CallId, StringComparison.Ordinal);
        var argument = Assert.Single(call.Arguments!);
        Assert.Equal("city", argument.Key);
        Assert.Equal("Paris", argument.Value);
        Assert.Empty(Texts(updates));
        Assert.Equal(ChatFinishReason.ToolCalls, updates[^1].FinishReason);
        Assert.All(updates.Take(updates.Count - 1), u => Assert.Null(u.FinishReason));
    }

    [Fact]
    public async Task GetStreamingResponseAsync_ToolModeNone_StreamsProseInstead()
    {
        using var client = Client();
        var options = new ChatOptions { Tools = [WeatherTool()], ToolMode = ChatToolMode.None };

        var updates = await Collect(client, "What is the weather in Paris?", options);

        Assert.Empty(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.EndsWith(".", string.Concat(Texts(updates)), StringComparison.Ordinal);
        Assert.True(Texts(updates).Count > 10);
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_PromptNotAskingForTool_StreamsProse()
    {
        using var client = Client();
        var options = new ChatOptions { Tools = [WeatherTool()] };

        var updates = await Collect(client, "Explain circuit breakers in distributed systems", options);

        Assert.Empty(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.True(Texts(updates).Count > 10);
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_RequiredToolMode_CallsToolEvenWhenPromptDoesNotAsk()
    {
        using var client = Client();
        var options = new ChatOptions { Tools = [WeatherTool()], ToolMode = ChatToolMode.RequireSpecific("get_weather") };

        var updates = await Collect(client, "Tell me something about Lisbon", options);

        var call = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Lisbon", call.Arguments!["city"]);
        Assert.Equal(ChatFinishReason.ToolCalls, updates[^1].FinishReason);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_LastMessageIsToolResult_StreamsProseMentioningResult()
    {
        using var client = Client();
        var options = new ChatOptions { Tools = [WeatherTool()] };
        List<ChatMessage> messages =
        [
            new(ChatRole.User, "What is the weather in Paris?"),
            new(ChatRole.Assistant, [new FunctionCallContent("call_1", "get_weather", new Dictionary<string, object?> { ["city"] = "Paris" })]),
            new(ChatRole.Tool, [new FunctionResultContent("call_1", "Sunny and 21 degrees in Paris")]),
        ];

        var updates = await Collect(client, messages, options);

        Assert.Empty(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        var text = string.Concat(Texts(updates));
        Assert.StartsWith("The tool answered: Sunny and 21 degrees in Paris", text, StringComparison.Ordinal);
        Assert.EndsWith(".", text, StringComparison.Ordinal);
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_Completed_FinalUpdateReportsUsageOfStreamedWords()
    {
        using var client = Client();

        var updates = await Collect(client, "Explain circuit breakers in distributed systems");

        var words = Texts(updates);
        var usage = Assert.Single(updates.SelectMany(u => u.Contents).OfType<UsageContent>()).Details;
        Assert.IsType<UsageContent>(Assert.Single(updates[^1].Contents));
        Assert.Equal(words.Sum(w => Tokens.Count(w)), usage.OutputTokenCount);
        Assert.True(usage.OutputTokenCount >= words.Count);
        Assert.True(usage.InputTokenCount > 0);
        Assert.Equal(usage.InputTokenCount + usage.OutputTokenCount, usage.TotalTokenCount);
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_LongerPrompt_CountsMoreInputTokens()
    {
        using var client = Client();

        var shortUsage = Usage(await Collect(client, "Explain retries"));
        var longUsage = Usage(await Collect(client, "Explain retries, backoff, jitter and circuit breakers in distributed systems with many replicas"));

        Assert.True(longUsage.InputTokenCount > shortUsage.InputTokenCount, $"{longUsage.InputTokenCount} <= {shortUsage.InputTokenCount}");
    }

    [Fact]
    public async Task GetStreamingResponseAsync_MaxOutputTokens5_StopsEarlyWithLength()
    {
        using var client = Client();
        const string prompt = "Explain circuit breakers in distributed systems";
        var unlimited = Texts(await Collect(client, prompt));

        var updates = await Collect(client, prompt, new ChatOptions { MaxOutputTokens = 5 });

        var words = Texts(updates);
        var usage = Usage(updates);
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.NotEmpty(words);
        Assert.True(words.Count < unlimited.Count);
        Assert.Equal(unlimited.Take(words.Count), words);
        Assert.True(usage.OutputTokenCount <= 5, $"{usage.OutputTokenCount} output tokens");
        Assert.Equal(words.Sum(w => Tokens.Count(w)), usage.OutputTokenCount);
        // The next word would not have fitted.
        Assert.True(usage.OutputTokenCount + Tokens.Count(unlimited[words.Count]) > 5);
    }

    [Fact]
    public async Task GetStreamingResponseAsync_EveryUpdate_CarriesModelAndOneResponseId()
    {
        using var client = Client();

        var updates = await Collect(client, "Explain retries");

        var id = updates[0].ResponseId;
        Assert.StartsWith("chatcmpl-sim-", id, StringComparison.Ordinal);
        Assert.All(updates, u =>
        {
            Assert.Equal(id, u.ResponseId);
            Assert.Equal("sim-model", u.ModelId);
            Assert.Equal(ChatRole.Assistant, u.Role);
            Assert.Equal(_time.GetUtcNow(), u.CreatedAt);
        });
    }

    private SimulatedChatClient Client(ProviderOptions? provider = null) =>
        new("sim-model", provider ?? new ProviderOptions { Type = ProviderTypes.Simulated, TokensPerSecond = 0, TimeToFirstTokenMs = 0 }, Tokens, _time);

    private static AIFunctionDeclaration WeatherTool() =>
        AIFunctionFactory.CreateDeclaration("get_weather", "Gets the current weather for a city.", WeatherSchema);

    private static Task<List<ChatResponseUpdate>> Collect(IChatClient client, string prompt, ChatOptions? options = null) =>
        Collect(client, [new ChatMessage(ChatRole.User, prompt)], options);

    private static async Task<List<ChatResponseUpdate>> Collect(IChatClient client, List<ChatMessage> messages, ChatOptions? options)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(messages, options))
        {
            updates.Add(update);
        }

        Assert.NotEmpty(updates);
        return updates;
    }

    private static List<string> Texts(List<ChatResponseUpdate> updates) =>
        updates.SelectMany(u => u.Contents).OfType<TextContent>().Select(t => t.Text).ToList();

    private static UsageDetails Usage(List<ChatResponseUpdate> updates) =>
        Assert.IsType<UsageContent>(Assert.Single(updates[^1].Contents)).Details;
}
