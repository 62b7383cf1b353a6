using System.ComponentModel;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.SemanticKernel;
using static AiStream.IntegrationTests.Agents.AgentTrace;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Agents;

/// <summary>
/// Agents with tools a host registers (Semantic Kernel plugins in DI), defined in a prompts folder of the test's own:
/// cancel during a tool call, cancel during a model turn, the step limit, and a recorded OpenAI stream of parallel tool
/// calls turned into streamed <c>TOOL_CALL_*</c> events and real tool executions.
/// </summary>
public sealed class AgentControlTests : IDisposable
{
    private readonly string _prompts = Directory.CreateTempSubdirectory("aistream-agents-").FullName;
    private readonly HostTools _tools = new();

    public AgentControlTests() => Directory.CreateDirectory(Path.Combine(_prompts, "agents"));

    public void Dispose() => Directory.Delete(_prompts, recursive: true);

    [Fact]
    public async Task CancelDuringAToolCall_TheToolGetsTheCancellation_AndTheRunEndsCancelledWithTheStepClosed()
    {
        Define("waiter", "slow_lookup");
        await using var gateway = Gateway(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var runId = await StartAsync(http, session, Agent("waiter", "Please do the slow lookup of Paris."));
        await watcher.ReadUntilAsync(e => e.Type == "STEP_STARTED" && e.Str("stepName") == "tool:slow_lookup");
        await _tools.LookupStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        using var cancel = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var rest = await watcher.ReadUntilAsync(e => e.IsRunEnd);

        Assert.Equal("cancelled", (await cancel.Content.ReadFromJsonAsync<JsonObject>())!["outcome"]!.GetValue<string>());
        Assert.True(await _tools.LookupCancelled.Task.WaitAsync(TimeSpan.FromSeconds(5)), "the running tool saw the run's cancellation");
        Assert.Equal(["STEP_FINISHED tool:slow_lookup", "RUN_FINISHED"], rest.Select(e => e.Type + (e.Str("stepName") is { } step ? " " + step : "")));
        Assert.Equal("cancelled", rest[^1].OutcomeType);
        Assert.DoesNotContain(watcher.Seen, e => e.Type == "TOOL_CALL_RESULT");
    }

    [Fact]
    public async Task CancelDuringALaterModelTurn_AbortsTheUpstreamRequest()
    {
        Define("forecaster", "get_weather", "get_product_name", model: "gpt-test");
        // The second turn's stream stops after a few chunks and stays open until the gateway goes away.
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.StallAfter(Fixtures.Events("openai-chat-text-usage-long.sse"), 6));
        upstream.Then(new UpstreamScript.Replay(Fixtures.Events("openai-chat-parallel-tool-calls.sse")));
        await using var gateway = Gateway(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var runId = await StartAsync(http, session, Agent("forecaster", "Weather in Mexico City?"));
        await watcher.ReadUntilAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Str("messageId") is not null && watcher.Seen.Any(s => s.Str("stepName") == "model:2"));
        var cancelledAt = DateTimeOffset.UtcNow;
        using var cancel = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var abortedAt = await upstream.Aborted.WaitAsync(TimeSpan.FromSeconds(5));
        var rest = await watcher.ReadUntilAsync(e => e.IsRunEnd);

        Assert.True(abortedAt - cancelledAt < TimeSpan.FromSeconds(1), $"the upstream saw the abort after {(abortedAt - cancelledAt).TotalMilliseconds} ms");
        Assert.Equal(["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"], rest.SkipWhile(e => e.Type == "TEXT_MESSAGE_CONTENT").Select(e => e.Type));
        Assert.Equal("cancelled", rest[^1].OutcomeType);
        Assert.Equal(2, upstream.RequestCount);
    }

    [Fact]
    public async Task StepLimit_EndsTheRunWithRunErrorMaxSteps_AfterTheLastAllowedStep()
    {
        Define("hasty", "calculate", maxSteps: 1);
        await using var gateway = Gateway(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("hasty", "What is 2 + 2?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        var pattern = Pattern(watcher.Seen.Select(e => e.Data));
        Assert.Equal("RUN_ERROR", pattern[^1]);
        Assert.Equal(["STEP_STARTED tool:calculate", "TOOL_CALL_RESULT", "STEP_FINISHED tool:calculate", "RUN_ERROR"], pattern[^4..]);
        var error = watcher.Seen[^1];
        Assert.Equal("max_steps", error.Str("code"));
        Assert.Contains("1 of its steps", error.Str("message"), StringComparison.Ordinal);
        Assert.Empty((await InfoAsync(http, session))["activeRuns"]!.AsArray());
    }

    [Fact]
    public async Task RecordedParallelToolCalls_StreamAsToolCallEvents_RunBothTools_AndTheModelSeesTheirResults()
    {
        Define("forecaster", "get_weather", "get_product_name", model: "gpt-test");
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        upstream.Then(new UpstreamScript.Replay(Fixtures.Events("openai-chat-parallel-tool-calls.sse")));
        await using var gateway = Gateway(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("forecaster", "What's the weather in Mexico City, and what is the product called?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);
        var events = watcher.Seen.Select(e => e.Data).ToList();

        var pattern = Pattern(events);
        Assert.Equal(
            ["RUN_STARTED", "STEP_STARTED model:1",
             "TOOL_CALL_START get_weather", "TOOL_CALL_ARGS*", "TOOL_CALL_START get_product_name", "TOOL_CALL_ARGS*", "TOOL_CALL_END", "TOOL_CALL_END",
             "STEP_FINISHED model:1",
             "STEP_STARTED tool:get_weather", "TOOL_CALL_RESULT", "STEP_FINISHED tool:get_weather",
             "STEP_STARTED tool:get_product_name", "TOOL_CALL_RESULT", "STEP_FINISHED tool:get_product_name",
             "STEP_STARTED model:2", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT*", "TEXT_MESSAGE_END", "STEP_FINISHED model:2", "RUN_FINISHED"],
            pattern);
        var weatherArgs = events.Where(e => Type(e) == "TOOL_CALL_ARGS" && e["toolCallId"]!.GetValue<string>() == "call_NS4iQj14cDFwc0BnrKqDHavt").ToList();
        Assert.True(weatherArgs.Count > 3, "the recorded arguments arrive in the recorded pieces");
        Assert.Equal("""{"city": "Mexico City"}""", string.Concat(weatherArgs.Select(e => e["delta"]!.GetValue<string>())));
        var results = events.Where(e => Type(e) == "TOOL_CALL_RESULT").ToList();
        Assert.Equal("Sunny, 24 °C in Mexico City", results[0]["content"]!.GetValue<string>());
        Assert.Equal("AiStream Gateway", results[1]["content"]!.GetValue<string>());

        // The second model turn was sent both calls and both results, in OpenAI's shape.
        var second = upstream.Requests.ElementAt(1).Body["messages"]!.AsArray().Select(m => m!.AsObject()).ToList();
        Assert.Equal("system", second[0]["role"]!.GetValue<string>());
        var assistant = second.Single(m => m["role"]!.GetValue<string>() == "assistant");
        Assert.Equal(["get_weather", "get_product_name"], assistant["tool_calls"]!.AsArray().Select(c => c!["function"]!["name"]!.GetValue<string>()));
        var tools = second.Where(m => m["role"]!.GetValue<string>() == "tool").ToList();
        Assert.Equal(["call_NS4iQj14cDFwc0BnrKqDHavt", assistant["tool_calls"]![1]!["id"]!.GetValue<string>()], tools.Select(t => t["tool_call_id"]!.GetValue<string>()));
        Assert.Contains("Mexico City", tools[0]["content"]!.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task EachModelTurn_GetsRetriesBeforeItsFirstToken_WithoutRepeatingAnything()
    {
        Define("forecaster", "get_weather", "get_product_name", model: "gpt-test");
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        upstream.Then(new UpstreamScript.Replay(Fixtures.Events("openai-chat-parallel-tool-calls.sse")), new UpstreamScript.Fail(503));
        await using var gateway = Gateway(Settings.Compatible(upstream.BaseUrl, maxRetries: 1));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("forecaster", "Weather in Mexico City?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        // The second turn failed once before its first token and was retried: three requests, one trace.
        Assert.Equal(3, upstream.RequestCount);
        Assert.Equal("success", watcher.Seen[^1].OutcomeType);
        var pattern = Pattern(watcher.Seen.Select(e => e.Data));
        Assert.Single(pattern, p => p == "STEP_STARTED model:2");
        Assert.Single(pattern, p => p == "TEXT_MESSAGE_START");
    }

    [Fact]
    public async Task TheDailyTokenBudget_HoldsEveryModelTurn_AndEndsTheRunWhenTheNextTurnDoesNotFit()
    {
        Define("hasty", "calculate");
        var settings = Tokens.AuthOn(Sim()).With("AiStream:Limits:DailyTokens", 360).With("AiStream:Limits:DefaultMaxTokens", 300);
        await using var gateway = Gateway(settings);
        using var http = gateway.Client().WithBearer(Tokens.Mint("alice", Tokens.Grants(("*", ["read", "write"]))));
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("hasty", "What is 2 + 2?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        // The first turn fitted (about 20 tokens of prompt plus 300 allowed, of 360); it used about 60, and the second
        // turn (about 45 tokens of prompt plus 300) does not fit in what is left.
        var pattern = Pattern(watcher.Seen.Select(e => e.Data));
        Assert.Equal(["STEP_STARTED tool:calculate", "TOOL_CALL_RESULT", "STEP_FINISHED tool:calculate", "RUN_ERROR"], pattern[^4..]);
        Assert.Equal("daily_token_budget_exceeded", watcher.Seen[^1].Str("code"));
    }

    [Fact]
    public async Task ACallToAToolTheAgentDoesNotHave_IsAnErrorResultTheModelSees_AndTheRunGoesOn()
    {
        Define("forecaster", "get_weather", model: "gpt-test");
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        upstream.Then(new UpstreamScript.Replay(Fixtures.Events("openai-chat-parallel-tool-calls.sse")));
        await using var gateway = Gateway(Settings.Compatible(upstream.BaseUrl));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("forecaster", "Weather in Mexico City, and the product's name?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        var results = watcher.Seen.Where(e => e.Type == "TOOL_CALL_RESULT").ToList();
        Assert.Equal("Sunny, 24 °C in Mexico City", results[0].Str("content"));
        Assert.Equal("Error: There is no tool named 'get_product_name'; the tools are: get_weather.", results[1].Str("content"));
        Assert.True(results[1].Data["error"]!.GetValue<bool>());
        Assert.Equal("success", watcher.Seen[^1].OutcomeType);
        Assert.Equal(2, upstream.RequestCount); // the model was asked again, with both results
    }

    [Fact]
    public async Task AToolThatIgnoresItsToken_CannotHoldTheRun_AndItsInternalErrorsStayInTheGatewaysLog()
    {
        Define("stubborn", ["stubborn_wait", "leaky_fetch"], null, null);
        await using var gateway = Gateway(Sim());
        using var http = gateway.Client();

        // A leaky tool's exception message (a path) is not what the session sees.
        var leaky = NewSessionId();
        using (var watcher = await SessionWatcher.OpenAsync(http, leaky))
        {
            await StartAsync(http, leaky, Agent("stubborn", "Please do the leaky fetch."));
            await watcher.ReadUntilAsync(e => e.IsRunEnd);
            Assert.Equal("Error: the tool failed.", watcher.Seen.Single(e => e.Type == "TOOL_CALL_RESULT").Str("content"));
            Assert.DoesNotContain(watcher.Seen, e => e.Json.Contains("/srv/secret", StringComparison.Ordinal));
        }

        // A tool that never looks at its token: cancel still ends the run at once.
        var session = NewSessionId();
        using var stubborn = await SessionWatcher.OpenAsync(http, session);
        var runId = await StartAsync(http, session, Agent("stubborn", "Please be stubborn and wait."));
        await stubborn.ReadUntilAsync(e => e.Type == "STEP_STARTED" && e.Str("stepName") == "tool:stubborn_wait");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var cancel = await http.PostAsync($"api/sessions/{session}/runs/{runId}/cancel", null);
        var end = (await stubborn.ReadUntilAsync(e => e.IsRunEnd))[^1];
        Assert.Equal("cancelled", (await cancel.Content.ReadFromJsonAsync<JsonObject>())!["outcome"]!.GetValue<string>());
        Assert.Equal("cancelled", end.OutcomeType);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the run ended {clock.Elapsed.TotalMilliseconds} ms after the cancel");
    }

    private GatewayFactory Gateway(Dictionary<string, string?> settings)
    {
        settings["AiStream:Agents:PromptsPath"] = _prompts;
        return new GatewayFactory(settings, services: services => services.AddSingleton(KernelPluginFactory.CreateFromObject(_tools, "host")));
    }

    private void Define(string name, params string[] tools) => Define(name, tools, null, null);

    private void Define(string name, string tool, string? model = null, int? maxSteps = null) => Define(name, [tool], model, maxSteps);

    private void Define(string name, string tool1, string tool2, string? model = null) => Define(name, [tool1, tool2], model, null);

    private void Define(string name, string[] tools, string? model, int? maxSteps) =>
        File.WriteAllText(Path.Combine(_prompts, "agents", name + ".yaml"), $"""
            name: {name}
            instructions: Use your tools, then answer.
            tools: [{string.Join(", ", tools)}]
            {(model is null ? "" : "model: " + model)}
            {(maxSteps is null ? "" : "max_steps: " + maxSteps)}
            """);

    /// <summary>Tools a host adds: Semantic Kernel functions on a plugin registered in DI.</summary>
    public sealed class HostTools
    {
        public TaskCompletionSource LookupStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource<bool> LookupCancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        [KernelFunction("slow_lookup")]
        [Description("Looks something up, slowly.")]
        public async Task<string> SlowLookupAsync([Description("What to look up.")] string query, CancellationToken cancellationToken)
        {
            LookupStarted.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
                return query;
            }
            catch (OperationCanceledException)
            {
                LookupCancelled.TrySetResult(true);
                throw;
            }
        }

        [KernelFunction("stubborn_wait")]
        [Description("Looks something up and never gives up.")]
        public static async Task<string> StubbornWaitAsync([Description("What to look up.")] string query)
        {
            await Task.Delay(TimeSpan.FromMinutes(10), CancellationToken.None);
            return query;
        }

        [KernelFunction("leaky_fetch")]
        [Description("Looks something up and fails.")]
        public static string LeakyFetch([Description("What to look up.")] string query) =>
            throw new InvalidOperationException($"could not open /srv/secret/{query}.db");

        [KernelFunction("get_weather")]
        [Description("The current weather in a city.")]
        public static string GetWeather([Description("The city.")] string city) => $"Sunny, 24 °C in {city}";

        [KernelFunction("get_product_name")]
        [Description("The product's name.")]
        public static string GetProductName() => "AiStream Gateway";
    }
}
