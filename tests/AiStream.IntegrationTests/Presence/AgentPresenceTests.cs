using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>A run is a member too: kind agent, id <c>agent:&lt;runId&gt;</c>, with a status while it works.</summary>
public sealed class AgentPresenceTests
{
    [Fact]
    public async Task Run_WhileStreaming_IsAnAgentMemberThatLeavesAfterRunFinished()
    {
        await using var gateway = new GatewayFactory(Settings(tokensPerSecond: 25));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");

        using var start = await http.PostAsJsonAsync($"api/sessions/{session}/runs", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "tell me about presence in collaborative editors" }),
        });
        Assert.Equal(202, (int)start.StatusCode);
        var runId = Str((await start.Content.ReadFromJsonAsync<JsonObject>())!["runId"]);
        var agentId = "agent:" + runId;
        JsonObject? during = null;
        await WaitUntilAsync(async () => (during = Member(await GetPresenceAsync(http, session), agentId)) is not null, "the agent in GET presence");
        var finished = await observer.WaitForAsync(e => e.Type == "RUN_FINISHED", "RUN_FINISHED");
        var leave = await observer.WaitForAsync(e => e.Is("presence.leave", agentId), "the agent's leave");
        var after = await GetPresenceAsync(http, session);

        Assert.Equal("agent", Str(during!["kind"]));
        Assert.Equal("sim", Str(during["name"]));
        Assert.Equal(1, during["connections"]!.GetValue<int>());
        Assert.Contains(Str(during["state"]!["status"]), new[] { "thinking", "writing" });
        Assert.Equal(runId, Str(during["state"]!["runId"]));
        Assert.Null(Member(after, agentId));
        Assert.Equal(1, after["total"]!.GetValue<int>());

        var seen = observer.Events;
        var started = seen.Single(e => e.Type == "RUN_STARTED");
        var join = seen.Single(e => e.Is("presence.join", agentId));
        var writing = seen.Single(e => e.Is("presence.update", agentId));
        var firstText = seen.First(e => e.Type == "TEXT_MESSAGE_START" && e.Data["role"]?.GetValue<string>() == "assistant");
        Assert.Equal("thinking", Str(join.Value!["state"]!["status"]));
        Assert.Equal("agent", Str(join.Value["kind"]));
        Assert.Equal("writing", Str(writing.Value!["state"]!["status"]));
        Assert.Equal("left", Str(leave.Value!["reason"]));
        Assert.Equal("agent", Str(leave.Value["kind"]));
        // In the log: the run starts, its agent joins thinking, starts writing as the text starts, the run ends, the agent leaves.
        Assert.True(started.Seq < join.Seq, "join after RUN_STARTED");
        Assert.True(join.Seq < writing.Seq && writing.Seq < firstText.Seq, "writing just before the text starts");
        Assert.True(finished.Seq < leave.Seq, "leave after RUN_FINISHED");
        Assert.Equal([join, writing, leave], seen.Where(e => e.MemberId == agentId));
    }
}
