using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Agents.AgentTrace;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Agents;

/// <summary>
/// Agent runs on the simulated model: the researcher's whole trace (steps, reasoning, streamed tool arguments, results,
/// a state write, the answer) reaches watchers over SSE, SignalR and <c>/agui</c> in the same order, and the agent is
/// a present member whose state says what it does.
/// </summary>
public sealed class AgentRunTests
{
    [Fact]
    public async Task Researcher_OverSse_StreamsItsWholeTraceInOrder()
    {
        // Every presence update logged, not coalesced, so the agent's states can be counted.
        var settings = Sim();
        settings["AiStream:Presence:UpdateCoalesceMilliseconds"] = "0";
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var runId = await StartAsync(http, session, Agent("researcher", Question));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);
        // The agent leaves once its run has ended.
        while (await watcher.NextOfAnyKindAsync() is { } next && !(next.Name == "presence.leave" && next.MemberId == "agent:" + runId))
        {
        }

        var events = watcher.Events.Select(e => e.Data).ToList();
        Assert.Equal(Researcher, Pattern(events));
        AssertResearcherContent(events);
        Assert.Equal("success", watcher.Events.Single(e => e.Type == "RUN_FINISHED").OutcomeType);
        Assert.Equal(runId, watcher.Events.Single(e => e.Type == "RUN_FINISHED").RunId);

        // The agent is a member of the session while it works, named after itself, saying what it does.
        var agent = watcher.Events.Where(e => e.IsPresenceChange && e.Value?["kind"]?.GetValue<string>() == "agent").ToList();
        Assert.Equal("presence.join", agent[0].Name);
        Assert.Equal("researcher", agent[0].Value!["name"]!.GetValue<string>());
        var states = agent.Where(e => e.Name != "presence.leave").Select(e => e.Value!["state"]!)
            .Select(s => s["status"]!.GetValue<string>() + (s["tool"] is { } tool ? ":" + tool.GetValue<string>() : "")).Distinct().ToList();
        Assert.Equal(["thinking", "calling_tool:calculate", "calling_tool:write_state", "writing"], states);
        Assert.Equal("presence.leave", agent[^1].Name);
    }

    [Fact]
    public async Task Researcher_StartedOverTheHub_ReachesHubWatchersWithTheSameTrace()
    {
        await using var gateway = new GatewayFactory(Sim());
        var session = NewSessionId();
        await using var hub = await SessionHubClient.ConnectAsync(gateway.Start());
        await hub.JoinAsync(session);

        var runId = await hub.Connection.InvokeAsync<string>("StartRun", session, JsonSerializer.SerializeToElement(Agent("researcher", Question)));
        await hub.WaitForRunEndAsync(session, runId);

        var events = hub.Events(session).Select(e => e.Data).ToList();
        Assert.Equal(Researcher, Pattern(events));
        AssertResearcherContent(events);
    }

    [Fact]
    public async Task Researcher_OverAgui_StreamsTheSameTraceAsItsOwnResponse()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        var input = new JsonObject
        {
            ["threadId"] = session,
            ["runId"] = "agui-agent-1",
            ["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["content"] = Question }),
            ["tools"] = new JsonArray(),
            ["context"] = new JsonArray(),
            ["state"] = new JsonObject(),
            ["forwardedProps"] = new JsonObject { ["agent"] = "researcher" },
        };
        using var request = new HttpRequestMessage(HttpMethod.Post, "agui") { Content = JsonContent.Create(input) };
        request.Headers.Accept.ParseAdd("text/event-stream");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var events = (await reader.ReadAllAsync(cts.Token))
            .Select(lines => lines.SingleOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal)))
            .OfType<string>().Select(data => (JsonObject)JsonNode.Parse(data["data: ".Length..])!).ToList();

        Assert.Equal(Researcher, Pattern(events));
        AssertResearcherContent(events);
    }

    [Fact]
    public async Task AgentAndPromptErrors_AreBadRequestsNamingWhatIsWrong()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();

        async Task<JsonObject> Refused(JsonObject body)
        {
            using var response = await http.PostAsJsonAsync($"api/sessions/{session}/runs", body);
            Assert.Equal(400, (int)response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
            return (await response.Content.ReadFromJsonAsync<JsonObject>())!;
        }

        var unknownAgent = await Refused(Agent("nobody", "hi"));
        Assert.Contains("'nobody'", unknownAgent["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("researcher", unknownAgent["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("unknown_agent", unknownAgent["error"]!["code"]!.GetValue<string>());

        var unknownPrompt = await Refused(new JsonObject { ["prompt"] = "poem" });
        Assert.Equal("unknown_prompt", unknownPrompt["error"]!["code"]!.GetValue<string>());
        Assert.Contains("summarize", unknownPrompt["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        var missing = await Refused(new JsonObject { ["prompt"] = "translate", ["variables"] = new JsonObject { ["text"] = "Hallo" } });
        Assert.Equal("missing_variable", missing["error"]!["code"]!.GetValue<string>());
        Assert.Equal("variables.language", missing["error"]!["param"]!.GetValue<string>());
        Assert.Contains("'language'", missing["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        var nullRequired = await Refused(new JsonObject { ["prompt"] = "summarize", ["variables"] = new JsonObject { ["text"] = null } });
        Assert.Equal("variables.text", nullRequired["error"]!["param"]!.GetValue<string>());

        var both = await Refused(new JsonObject { ["prompt"] = "summarize", ["agent"] = "researcher" });
        Assert.Contains("not both", both["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        var notObject = await Refused(new JsonObject { ["prompt"] = "summarize", ["variables"] = "text" });
        Assert.Equal("variables", notObject["error"]!["param"]!.GetValue<string>());

        // Nothing of a refused run reached the session.
        Assert.Equal(0, (await InfoAsync(http, session))["headSeq"]!.GetValue<long>());
    }

    [Fact]
    public async Task PromptTemplate_RendersTheUserMessageAndRunsIt_OverRestAndTheHub()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, new JsonObject
        {
            ["prompt"] = "summarize",
            ["variables"] = new JsonObject { ["text"] = "Streams <b>tokens</b> & events.", ["sentences"] = 2 },
        });
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        var user = watcher.Seen.First(e => e.Type == "TEXT_MESSAGE_CONTENT");
        Assert.Equal(
            "Summarize the following text in 2 sentences for a busy colleague. Keep names, numbers and decisions.\n\nStreams <b>tokens</b> & events.",
            user.Str("delta"));
        Assert.Equal("success", watcher.Seen.Single(e => e.Type == "RUN_FINISHED").OutcomeType);
        Assert.NotEmpty(FinalText(watcher.Seen.SkipWhile(e => e.Type != "RUN_STARTED").Select(e => e.Data)));

        await using var hub = await SessionHubClient.ConnectAsync(gateway.Start());
        await hub.JoinAsync(session);
        var runId = await hub.Connection.InvokeAsync<string>("StartRun", session, JsonSerializer.SerializeToElement(new JsonObject
        {
            ["prompt"] = "translate",
            ["variables"] = new JsonObject { ["text"] = "Good morning", ["language"] = "French" },
        }));
        await hub.WaitForRunEndAsync(session, runId);
        Assert.Contains(hub.Events(session), e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Str("delta")!.StartsWith("Translate the following text into French.", StringComparison.Ordinal));
        var error = await Assert.ThrowsAsync<HubException>(() => hub.Connection.InvokeAsync<string>("StartRun", session,
            JsonSerializer.SerializeToElement(new JsonObject { ["prompt"] = "translate" })));
        Assert.Contains("'text'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FailingTool_BecomesAnErrorResultTheModelSees_AndTheRunGoesOn()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("researcher", "What is 5 / 0?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        var result = watcher.Seen.Single(e => e.Type == "TOOL_CALL_RESULT");
        Assert.StartsWith("Error: ", result.Str("content"), StringComparison.Ordinal);
        Assert.Contains("divides by zero", result.Str("content"), StringComparison.Ordinal);
        Assert.True(result.Data["error"]!.GetValue<bool>());
        Assert.Contains("divides by zero", FinalText(watcher.Seen.Select(e => e.Data)), StringComparison.Ordinal);
        Assert.Equal("success", watcher.Seen.Single(e => e.Type == "RUN_FINISHED").OutcomeType);
    }

    [Fact]
    public async Task LateJoiner_MidRun_GetsTheStepsToolCallsResultsAndPartialText_ThenTheSameEnd()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 40));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var early = await SessionWatcher.OpenAsync(http, session);

        await StartAsync(http, session, Agent("researcher", Question));
        // Join once the answer is being written: two tool steps are behind the run, and some text is out.
        await early.ReadUntilAsync(e => e.Type == "TEXT_MESSAGE_CONTENT" && early.Seen.Count(s => s.Type == "TEXT_MESSAGE_CONTENT" && s.Str("messageId") == e.Str("messageId")) >= 3);
        using var late = await SessionWatcher.OpenAsync(http, session);
        var caughtUp = await late.ReadUntilAsync(e => e.Type == "TEXT_MESSAGE_CONTENT");

        Assert.Equal("MESSAGES_SNAPSHOT", caughtUp[0].Type);
        var messages = caughtUp[0].Data["messages"]!.AsArray().Select(m => m!.AsObject()).ToList();
        var toolCalls = messages.Where(m => m["toolCalls"] is JsonArray).SelectMany(m => m["toolCalls"]!.AsArray()).Select(c => c!["function"]!["name"]!.GetValue<string>()).ToList();
        Assert.Equal(["calculate", "write_state"], toolCalls);
        Assert.Equal(["391", "Set /findings to \"391\"."], messages.Where(m => m["role"]!.GetValue<string>() == "tool").Select(m => m["content"]!.GetValue<string>()));
        Assert.Equal("391", caughtUp.Single(e => e.Type == "STATE_SNAPSHOT").Data["snapshot"]!["findings"]!.GetValue<string>());
        var steps = caughtUp.Where(e => e.Type.StartsWith("STEP_", StringComparison.Ordinal)).Select(e => e.Type + " " + e.Str("stepName")).ToList();
        Assert.Equal(
            ["STEP_STARTED model:1", "STEP_FINISHED model:1", "STEP_STARTED tool:calculate", "STEP_FINISHED tool:calculate",
             "STEP_STARTED model:2", "STEP_FINISHED model:2", "STEP_STARTED tool:write_state", "STEP_FINISHED tool:write_state", "STEP_STARTED model:3"],
            steps);
        Assert.Contains(caughtUp, e => e.Type == "TEXT_MESSAGE_START");

        await early.ReadUntilAsync(e => e.IsRunEnd);
        await late.ReadUntilAsync(e => e.IsRunEnd);
        var full = FinalText(early.Seen.Select(e => e.Data));
        Assert.Equal(full, FinalText(late.Seen.Select(e => e.Data)));
        Assert.Contains("calculate gave 391", full, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Listing_NamesTheShippedAgentsWithTheirTools()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var agents = (await http.GetFromJsonAsync<JsonObject>("api/agents"))!["data"]!.AsArray();
        var researcher = agents.Single(a => a!["name"]!.GetValue<string>() == "researcher")!;
        Assert.Equal(["current_time", "calculate", "read_state", "write_state"], researcher["tools"]!.AsArray().Select(t => t!["name"]!.GetValue<string>()));
        Assert.Contains(agents, a => a!["name"]!.GetValue<string>() == "state-editor");
        Assert.Equal(6, researcher["maxSteps"]!.GetValue<int>());
        var prompts = (await http.GetFromJsonAsync<JsonObject>("api/prompts"))!["data"]!.AsArray().Select(p => p!["name"]!.GetValue<string>());
        Assert.Equal(["explain-code", "summarize", "translate"], prompts);
    }
}
