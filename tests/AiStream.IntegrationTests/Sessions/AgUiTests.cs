using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary><c>POST /agui</c>: a run streamed in the AG-UI SSE encoding, and the same run for everyone watching the session.</summary>
public sealed class AgUiTests
{
    private static JsonObject RunAgentInput(string threadId, string runId) => new()
    {
        ["threadId"] = threadId,
        ["runId"] = runId,
        ["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["content"] = "hi" }),
        ["tools"] = new JsonArray(),
        ["context"] = new JsonArray(),
        ["state"] = new JsonObject(),
        ["forwardedProps"] = new JsonObject(),
    };

    /// <summary>Posts a RunAgentInput and reads the whole AG-UI stream as (id, event) pairs.</summary>
    private static async Task<List<(long Id, JsonObject Event)>> RunAsync(HttpClient http, JsonObject input)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "agui") { Content = JsonContent.Create(input) };
        request.Headers.Accept.ParseAdd("text/event-stream");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var events = new List<(long, JsonObject)>();
        foreach (var lines in await reader.ReadAllAsync(cts.Token))
        {
            var data = lines.SingleOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal));
            if (data is not null)
            {
                var id = lines.Single(l => l.StartsWith("id: ", StringComparison.Ordinal));
                events.Add((long.Parse(id["id: ".Length..], CultureInfo.InvariantCulture), (JsonObject)JsonNode.Parse(data["data: ".Length..])!));
            }
        }

        return events;
    }

    private static string Type(JsonObject e) => e["type"]!.GetValue<string>();

    [Fact]
    public async Task PostAgui_RunAgentInput_StreamsTheRunThatSessionWatchersAlsoSee()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 200));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var events = await RunAsync(http, RunAgentInput(session, "run-agui-1"));
        var watched = await watcher.ReadUntilTypeAsync("RUN_FINISHED");

        Assert.Equal("RUN_STARTED", Type(events[0].Event));
        Assert.Equal("run-agui-1", events[0].Event["runId"]!.GetValue<string>());
        Assert.Equal(session, events[0].Event["threadId"]!.GetValue<string>());
        Assert.Equal("RUN_FINISHED", Type(events[^1].Event));
        Assert.Equal("run-agui-1", events[^1].Event["runId"]!.GetValue<string>());
        var middle = events.Skip(1).SkipLast(1).Select(e => Type(e.Event)).ToList();
        Assert.Equal("TEXT_MESSAGE_START", middle[0]);
        Assert.Equal("TEXT_MESSAGE_END", middle[^1]);
        Assert.True(middle.Count > 3);
        Assert.All(middle.Skip(1).SkipLast(1), t => Assert.Equal("TEXT_MESSAGE_CONTENT", t));
        // Only this run's events, in log order (the session's other events, such as presence, are not part of the run).
        Assert.Equal(events.Select(e => e.Id).Order().Distinct(), events.Select(e => e.Id));
        Assert.Equal(watcher.Events.Where(e => e.Id >= events[0].Id && e.Id <= events[^1].Id && !e.IsPresence).Select(e => e.Id), events.Select(e => e.Id));
        // The watcher saw the same run at the same positions, with the same fields (AG-UI drops only the gateway's extras).
        var byId = watcher.Live.ToDictionary(e => e.Id);
        foreach (var (id, e) in events)
        {
            var same = (JsonObject)byId[id].Data.DeepClone();
            same.Remove("seq");
            if (same["outcome"] is JsonObject outcome)
            {
                outcome.Remove("reason");
            }

            Assert.True(JsonNode.DeepEquals(same, e), $"{id}: {same.ToJsonString()} != {e.ToJsonString()}");
        }

        Assert.Equal(events[^1].Id, watched[^1].Seq);
    }

    [Fact]
    public async Task PostAgui_SameMessagesTwice_DoesNotDuplicateTheUserMessage()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();

        var first = await RunAsync(http, RunAgentInput(session, "run-a"));
        var second = await RunAsync(http, RunAgentInput(session, "run-b"));
        using var watcher = await SessionWatcher.OpenAsync(http, session);
        var snapshot = (await watcher.ReadCountAsync(1))[0];

        Assert.Equal("RUN_FINISHED", Type(first[^1].Event));
        Assert.Equal("run-b", second[0].Event["runId"]!.GetValue<string>());
        Assert.Equal("RUN_FINISHED", Type(second[^1].Event));
        Assert.Equal("MESSAGES_SNAPSHOT", snapshot.Type);
        var messages = snapshot.Data["messages"]!.AsArray().Select(m => m!.AsObject()).ToList();
        var user = Assert.Single(messages, m => m["role"]!.GetValue<string>() == "user");
        Assert.Equal("u1", user["id"]!.GetValue<string>());
        Assert.Equal("hi", user["content"]!.GetValue<string>());
        Assert.Equal(2, messages.Count(m => m["role"]!.GetValue<string>() == "assistant"));
    }
    [Fact]
    public async Task PostAgui_WithAFrontendTool_StreamsTheToolCallThenAnswersTheResult()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        var weather = new JsonObject
        {
            ["name"] = "get_weather",
            ["description"] = "Current weather in a city",
            ["parameters"] = new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject { ["city"] = new JsonObject { ["type"] = "string" } },
                ["required"] = new JsonArray("city"),
            },
        };
        var input = RunAgentInput(session, "tool-1");
        input["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["content"] = "What is the weather in Paris?" });
        input["tools"] = new JsonArray(weather);

        var first = (await RunAsync(http, input)).Select(e => e.Event).ToList();

        // The model says why (reasoning events), then streams the call's arguments in pieces.
        var call = first.Where(e => !Type(e).StartsWith("REASONING_", StringComparison.Ordinal)).ToList();
        Assert.Equal(["RUN_STARTED", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "RUN_FINISHED"], call.Select(Type).Distinct());
        Assert.Equal(["REASONING_START", "REASONING_MESSAGE_START"], first.Skip(1).Take(2).Select(Type));
        var start = call[1];
        Assert.Equal("get_weather", start["toolCallName"]!.GetValue<string>());
        var callId = start["toolCallId"]!.GetValue<string>();
        var parentId = start["parentMessageId"]!.GetValue<string>();
        var pieces = call.Where(e => Type(e) == "TOOL_CALL_ARGS").Select(e => e["delta"]!.GetValue<string>()).ToList();
        Assert.True(pieces.Count > 1, "the arguments stream in pieces");
        Assert.Equal("""{"city":"Paris"}""", string.Concat(pieces));

        // The frontend ran the tool and sends the history back with its result, as an AG-UI client does.
        var second = RunAgentInput(session, "tool-2");
        second["messages"] = new JsonArray(
            new JsonObject { ["id"] = "u1", ["role"] = "user", ["content"] = "What is the weather in Paris?" },
            new JsonObject
            {
                ["id"] = parentId,
                ["role"] = "assistant",
                ["toolCalls"] = new JsonArray(new JsonObject
                {
                    ["id"] = callId,
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = """{"city":"Paris"}""" },
                }),
            },
            new JsonObject { ["id"] = "t1", ["role"] = "tool", ["toolCallId"] = callId, ["content"] = "18 degrees and sunny" });
        second["tools"] = new JsonArray(weather.DeepClone());

        var answer = (await RunAsync(http, second)).Select(e => e.Event).ToList();

        Assert.Equal("RUN_STARTED", Type(answer[0]));
        Assert.Equal("RUN_FINISHED", Type(answer[^1]));
        var text = string.Concat(answer.Where(e => Type(e) == "TEXT_MESSAGE_CONTENT").Select(e => e["delta"]!.GetValue<string>()));
        Assert.Contains("18 degrees and sunny", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostAgui_MalformedTools_Returns400()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var input = RunAgentInput(NewSessionId(), "bad-tools");
        input["tools"] = new JsonArray(new JsonObject { ["description"] = "no name" });

        using var response = await http.PostAsJsonAsync("agui", input);

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("tools[0]", (await response.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["param"]!.GetValue<string>());
    }
    [Fact]
    public async Task PostAgui_WithState_LogsItBeforeTheRunAndNotWhenTheInputIsRejected()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session);

        var rejected = RunAgentInput(session, "state-bad");
        rejected["state"] = new JsonObject { ["count"] = 1 };
        rejected["messages"] = "not an array";
        using (var response = await http.PostAsJsonAsync("agui", rejected))
        {
            Assert.Equal(400, (int)response.StatusCode);
        }

        var input = RunAgentInput(session, "state-ok");
        input["state"] = new JsonObject { ["count"] = 3 };
        await RunAsync(http, input);
        var events = await watcher.ReadUntilTypeAsync("RUN_FINISHED");

        var snapshots = events.Where(e => e.Type == "STATE_SNAPSHOT" && e.Id > (watcher.SnapshotHead ?? 0)).ToList();
        var state = Assert.Single(snapshots);
        Assert.Equal(3, state.Data["snapshot"]!["count"]!.GetValue<int>());
        Assert.True(state.Seq < events.Single(e => e.Type == "RUN_STARTED").Seq);
    }
}
