using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace AiStream.IntegrationTests.Agents;

/// <summary>An agent run's events as a dashboard reads them, and the trace every transport must show for the researcher.</summary>
internal static class AgentTrace
{
    /// <summary>What the researcher is asked in the scripted run: one calculation, one state write, then the answer.</summary>
    public const string Question = "What is 17 * 23? Write the answer to the findings.";

    /// <summary>
    /// The exact trace of the scripted researcher run on the simulated model, from RUN_STARTED to RUN_FINISHED. Steps
    /// and tool calls carry their names; <c>*</c> marks a run of one or more streamed pieces.
    /// </summary>
    public static readonly string[] Researcher =
    [
        "RUN_STARTED",
        "STEP_STARTED model:1",
        "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT*", "REASONING_MESSAGE_END", "REASONING_END",
        "TOOL_CALL_START calculate", "TOOL_CALL_ARGS*", "TOOL_CALL_END",
        "STEP_FINISHED model:1",
        "STEP_STARTED tool:calculate", "TOOL_CALL_RESULT", "STEP_FINISHED tool:calculate",
        "STEP_STARTED model:2",
        "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT*", "REASONING_MESSAGE_END", "REASONING_END",
        "TOOL_CALL_START write_state", "TOOL_CALL_ARGS*", "TOOL_CALL_END",
        "STEP_FINISHED model:2",
        "STEP_STARTED tool:write_state", "STATE_DELTA", "TOOL_CALL_RESULT", "STEP_FINISHED tool:write_state",
        "STEP_STARTED model:3",
        "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT*", "TEXT_MESSAGE_END",
        "STEP_FINISHED model:3",
        "RUN_FINISHED",
    ];

    /// <summary>The run's events (from its RUN_STARTED to its end, presence left out) as a pattern comparable to <see cref="Researcher"/>.</summary>
    public static List<string> Pattern(IEnumerable<JsonObject> events)
    {
        var pattern = new List<string>();
        var inRun = false;
        foreach (var e in events)
        {
            var type = e["type"]!.GetValue<string>();
            if (type == "CUSTOM" && e["name"]?.GetValue<string>() is { } name && name.StartsWith("presence.", StringComparison.Ordinal))
            {
                continue;
            }

            inRun |= type == "RUN_STARTED";
            if (!inRun)
            {
                continue;
            }

            var token = type switch
            {
                "STEP_STARTED" or "STEP_FINISHED" => type + " " + e["stepName"]!.GetValue<string>(),
                "TOOL_CALL_START" => type + " " + e["toolCallName"]!.GetValue<string>(),
                "TEXT_MESSAGE_CONTENT" or "TOOL_CALL_ARGS" or "REASONING_MESSAGE_CONTENT" => type + "*",
                _ => type,
            };
            if (!(token.EndsWith('*') && pattern.Count > 0 && pattern[^1] == token))
            {
                pattern.Add(token);
            }

            if (type is "RUN_FINISHED" or "RUN_ERROR")
            {
                break;
            }
        }

        return pattern;
    }

    /// <summary>Checks what the researcher's trace carries besides its shape: arguments, results, the state write and the answer.</summary>
    public static void AssertResearcherContent(IReadOnlyList<JsonObject> events)
    {
        var calls = events.Where(e => Type(e) == "TOOL_CALL_START").ToList();
        Assert.Equal(2, calls.Count);
        string Args(JsonObject start) => string.Concat(events
            .Where(e => Type(e) == "TOOL_CALL_ARGS" && e["toolCallId"]!.GetValue<string>() == start["toolCallId"]!.GetValue<string>())
            .Select(e => e["delta"]!.GetValue<string>()));
        Assert.True(events.Count(e => Type(e) == "TOOL_CALL_ARGS") > 2, "arguments stream in pieces");
        Assert.Equal("""{"expression":"17 * 23"}""", Args(calls[0]));
        var write = JsonNode.Parse(Args(calls[1]))!;
        Assert.Equal("/findings", write["path"]!.GetValue<string>());
        Assert.Equal("\"391\"", write["value"]!.GetValue<string>());
        var results = events.Where(e => Type(e) == "TOOL_CALL_RESULT").ToList();
        Assert.Equal("391", results[0]["content"]!.GetValue<string>());
        Assert.Equal(calls[0]["toolCallId"]!.GetValue<string>(), results[0]["toolCallId"]!.GetValue<string>());
        Assert.Equal(calls[1]["toolCallId"]!.GetValue<string>(), results[1]["toolCallId"]!.GetValue<string>());
        var delta = events.Single(e => Type(e) == "STATE_DELTA")["delta"]!.AsArray().Single()!;
        Assert.Equal("add", delta["op"]!.GetValue<string>());
        Assert.Equal("/findings", delta["path"]!.GetValue<string>());
        Assert.Equal("391", delta["value"]!.GetValue<string>());
        Assert.Contains("calculate gave 391", FinalText(events), StringComparison.Ordinal);
    }

    /// <summary>The assistant's text, as a client assembles it from starts and deltas (a catch-up's partial text included).</summary>
    public static string FinalText(IEnumerable<JsonObject> events)
    {
        var list = events.ToList();
        var assistant = list.Where(e => Type(e) == "TEXT_MESSAGE_START" && e["role"]?.GetValue<string>() == "assistant")
            .Select(e => e["messageId"]!.GetValue<string>()).ToHashSet();
        return string.Concat(list.Where(e => Type(e) == "TEXT_MESSAGE_CONTENT" && assistant.Contains(e["messageId"]!.GetValue<string>()))
            .Select(e => e["delta"]!.GetValue<string>()));
    }

    public static string Type(JsonObject e) => e["type"]!.GetValue<string>();

    /// <summary>Starts a run with <paramref name="body"/>; asserts 202 and returns the run id.</summary>
    public static async Task<string> StartAsync(HttpClient http, string sessionId, JsonObject body)
    {
        using var response = await http.PostAsJsonAsync($"api/sessions/{sessionId}/runs", body);
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(202 == (int)response.StatusCode, $"start answered {(int)response.StatusCode}: {answer}");
        return answer!["runId"]!.GetValue<string>();
    }

    public static JsonObject Agent(string agent, string question) => new()
    {
        ["agent"] = agent,
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question }),
    };
}
