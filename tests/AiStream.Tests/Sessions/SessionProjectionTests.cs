using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;

namespace AiStream.Tests.Sessions;

public sealed class SessionProjectionTests
{
    private static void Apply(SessionProjection projection, string json, string? runId = null)
    {
        var e = (JsonObject)JsonNode.Parse(json)!;
        projection.Apply(e["type"]!.GetValue<string>(), e, runId);
    }

    private static List<JsonObject> Snapshot(SessionProjection projection) => projection.Snapshot(100).Select(s => s.Body).ToList();

    [Fact]
    public void Snapshot_RunInProgress_SummarisesConversationStateAndPartialText()
    {
        var p = new SessionProjection(StateLimits.None);
        Apply(p, """{"type":"TEXT_MESSAGE_START","messageId":"u1","role":"user"}""");
        Apply(p, """{"type":"TEXT_MESSAGE_CONTENT","messageId":"u1","delta":"hello"}""");
        Apply(p, """{"type":"TEXT_MESSAGE_END","messageId":"u1"}""");
        Apply(p, """{"type":"STATE_SNAPSHOT","snapshot":{"count":1}}""");
        Apply(p, """{"type":"STATE_DELTA","delta":[{"op":"replace","path":"/count","value":2}]}""");
        Apply(p, """{"type":"RUN_STARTED","threadId":"s","runId":"r1"}""", "r1");
        Apply(p, """{"type":"TEXT_MESSAGE_START","messageId":"a1","role":"assistant"}""", "r1");
        Apply(p, """{"type":"TEXT_MESSAGE_CONTENT","messageId":"a1","delta":"Hi"}""", "r1");
        Apply(p, """{"type":"TEXT_MESSAGE_CONTENT","messageId":"a1","delta":" there"}""", "r1");

        var snapshot = Snapshot(p);

        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT", "CUSTOM", "RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT"],
            snapshot.Select(e => e["type"]!.GetValue<string>()));
        Assert.Equal("""[{"id":"u1","role":"user","content":"hello"}]""", snapshot[0]["messages"]!.ToJsonString());
        Assert.Equal("""{"count":2}""", snapshot[1]["snapshot"]!.ToJsonString());
        Assert.Equal("presence.snapshot", snapshot[2]["name"]!.GetValue<string>());
        Assert.Equal("r1", snapshot[3]["runId"]!.GetValue<string>());
        Assert.Equal("a1", snapshot[4]["messageId"]!.GetValue<string>());
        Assert.Equal("Hi there", snapshot[5]["delta"]!.GetValue<string>());
    }

    [Fact]
    public void Superseded_AnswersLeaveTheConversation_TheirIdsStayKnown_UnknownIdsAreIgnored()
    {
        var p = new SessionProjection(StateLimits.None);
        foreach (var (id, role) in new[] { ("u1", "user"), ("a1", "assistant"), ("u2", "user"), ("a2", "assistant") })
        {
            Apply(p, $$"""{"type":"TEXT_MESSAGE_START","messageId":"{{id}}","role":"{{role}}"}""");
            Apply(p, $$"""{"type":"TEXT_MESSAGE_CONTENT","messageId":"{{id}}","delta":"{{id}} text"}""");
            Apply(p, $$"""{"type":"TEXT_MESSAGE_END","messageId":"{{id}}"}""");
        }

        Apply(p, """{"type":"CUSTOM","name":"conversation.superseded","value":{"messageIds":["a2","nope",3]}}""");

        Assert.Equal(["u1", "a1", "u2"], p.Messages.Select(m => m["id"]!.GetValue<string>()));
        Assert.True(p.HasMessage("a2"), "a client sending the old answer back does not add it again");
        var snapshot = Snapshot(p);
        Assert.Equal("""[{"id":"u1","role":"user","content":"u1 text"},{"id":"a1","role":"assistant","content":"a1 text"},{"id":"u2","role":"user","content":"u2 text"}]""",
            snapshot[0]["messages"]!.ToJsonString());

        // A checkpoint carries the superseded ids: a projection restored from it still refuses them.
        Assert.Equal("""{"type":"CUSTOM","name":"conversation.superseded","value":{"messageIds":["a2","nope"]}}""", snapshot[1].ToJsonString());
        var restored = new SessionProjection(StateLimits.None);
        foreach (var e in snapshot)
        {
            restored.Apply(e["type"]!.GetValue<string>(), e, null);
        }

        Assert.True(restored.HasMessage("a2"));
        Assert.Equal(3, restored.Messages.Count);
    }

    [Fact]
    public void Snapshot_AfterRunFinished_HasTheAnswerInMessagesAndNoRun()
    {
        var p = new SessionProjection(StateLimits.None);
        Apply(p, """{"type":"RUN_STARTED","threadId":"s","runId":"r1"}""", "r1");
        Apply(p, """{"type":"TEXT_MESSAGE_START","messageId":"a1","role":"assistant"}""", "r1");
        Apply(p, """{"type":"TEXT_MESSAGE_CONTENT","messageId":"a1","delta":"Done."}""", "r1");
        Apply(p, """{"type":"TEXT_MESSAGE_END","messageId":"a1"}""", "r1");
        Apply(p, """{"type":"TOOL_CALL_START","toolCallId":"t1","toolCallName":"lookup","parentMessageId":"a1"}""", "r1");
        Apply(p, """{"type":"TOOL_CALL_ARGS","toolCallId":"t1","delta":"{\"q\":"}""", "r1");
        Apply(p, """{"type":"TOOL_CALL_ARGS","toolCallId":"t1","delta":"1}"}""", "r1");
        Apply(p, """{"type":"TOOL_CALL_END","toolCallId":"t1"}""", "r1");
        Apply(p, """{"type":"TOOL_CALL_RESULT","messageId":"tr1","toolCallId":"t1","content":"42"}""", "r1");
        Apply(p, """{"type":"RUN_FINISHED","threadId":"s","runId":"r1"}""", "r1");

        var snapshot = Snapshot(p);

        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT", "CUSTOM"], snapshot.Select(e => e["type"]!.GetValue<string>()));
        Assert.Equal(
            """[{"id":"a1","role":"assistant","content":"Done.","toolCalls":[{"id":"t1","type":"function","function":{"name":"lookup","arguments":"{\u0022q\u0022:1}"}}]},{"id":"tr1","role":"tool","content":"42","toolCallId":"t1"}]""",
            snapshot[0]["messages"]!.ToJsonString());
        Assert.Empty(p.ActiveRuns);
    }

    [Fact]
    public void Apply_RunError_EndsTheRunItBelongsTo()
    {
        var p = new SessionProjection(StateLimits.None);
        Apply(p, """{"type":"RUN_STARTED","threadId":"s","runId":"r1"}""", "r1");
        Apply(p, """{"type":"RUN_ERROR","message":"boom"}""", "r1");

        Assert.Empty(p.ActiveRuns);
    }

    [Fact]
    public void Apply_MessagesSnapshot_ReplacesTheConversation()
    {
        var p = new SessionProjection(StateLimits.None);
        Apply(p, """{"type":"TEXT_MESSAGE_START","messageId":"old","role":"user"}""");
        Apply(p, """{"type":"TEXT_MESSAGE_CONTENT","messageId":"old","delta":"x"}""");
        Apply(p, """{"type":"TEXT_MESSAGE_END","messageId":"old"}""");
        Apply(p, """{"type":"MESSAGES_SNAPSHOT","messages":[{"id":"n1","role":"user","content":"new"}]}""");

        Assert.Equal("n1", Assert.Single(p.Messages)["id"]!.GetValue<string>());
        Assert.True(p.HasMessage("n1"));
        Assert.False(p.HasMessage("old"));
    }

    [Fact]
    public void Apply_InvalidStateDelta_KeepsTheState()
    {
        var p = new SessionProjection(StateLimits.None);
        Apply(p, """{"type":"STATE_SNAPSHOT","snapshot":{"a":1}}""");
        Apply(p, """{"type":"STATE_DELTA","delta":[{"op":"remove","path":"/nope"}]}""");

        Assert.Equal("""{"a":1}""", Snapshot(p)[1]["snapshot"]!.ToJsonString());
    }

    [Fact]
    public void Snapshot_PresenceEvents_ListMembersUpToTheCapWithTheTotal()
    {
        var p = new SessionProjection(StateLimits.None);
        foreach (var id in new[] { "a", "b", "c" })
        {
            Apply(p, """{"type":"CUSTOM","name":"presence.join","value":{"id":""" + "\"" + id + "\",\"name\":\"" + id + "\"" + ""","kind":"user","connections":1,"state":{}}}""");
        }

        Apply(p, """{"type":"CUSTOM","name":"presence.update","value":{"id":"a","name":"a","kind":"user","connections":1,"state":{"typing":true}}}""");
        Apply(p, """{"type":"CUSTOM","name":"presence.leave","value":{"id":"b","name":"b","kind":"user","connections":0,"reason":"left"}}""");
        Apply(p, """{"type":"CUSTOM","name":"other","value":{"id":"z"}}""");

        var presence = Snapshot(p).Single(e => e["name"]?.GetValue<string>() == "presence.snapshot")["value"]!;

        Assert.Equal(2, presence["total"]!.GetValue<int>());
        Assert.Equal(["a", "c"], presence["members"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()));
        Assert.True(presence["members"]![0]!["state"]!["typing"]!.GetValue<bool>());
    }

    [Fact]
    public void Snapshot_CrowdedSession_GivesTheLastCountedTotal_ThenEveryoneOnceTheCrowdIsOver()
    {
        var p = new SessionProjection(StateLimits.None);
        Apply(p, """{"type":"CUSTOM","name":"presence.join","value":{"id":"a","name":"a","kind":"user","connections":1,"state":{}}}""");
        Apply(p, """{"type":"CUSTOM","name":"presence.count","value":{"members":250,"joined":249,"left":0,"updated":0}}""");

        var crowded = Snapshot(p).Single(e => e["name"]?.GetValue<string>() == "presence.snapshot")["value"]!;
        Assert.Equal(250, crowded["total"]!.GetValue<int>());
        Assert.Empty(crowded["members"]!.AsArray());
        Assert.True(crowded["counted"]!.GetValue<bool>());

        // A checkpoint holding that snapshot restores the crowd.
        var restored = new SessionProjection(StateLimits.None);
        Apply(restored, """{"type":"CUSTOM","name":"presence.snapshot","value":""" + crowded.ToJsonString() + "}");
        Assert.Equal(250, Snapshot(restored).Single(e => e["name"]?.GetValue<string>() == "presence.snapshot")["value"]!["total"]!.GetValue<int>());

        // The store logs everyone present when the crowd is over; members are tracked one by one again from there.
        Apply(p, """{"type":"CUSTOM","name":"presence.snapshot","value":{"members":[{"id":"a","name":"a","kind":"user","connections":1,"state":{}}],"total":1}}""");
        Apply(p, """{"type":"CUSTOM","name":"presence.join","value":{"id":"b","name":"b","kind":"user","connections":1,"state":{}}}""");
        var after = Snapshot(p).Single(e => e["name"]?.GetValue<string>() == "presence.snapshot")["value"]!;
        Assert.Equal(2, after["total"]!.GetValue<int>());
        Assert.Equal(["a", "b"], after["members"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()));
        Assert.Null(after["counted"]);
    }

    [Fact]
    public void Apply_PoisonedLogBeyondTheStateLimits_SkipsThoseEventsAndKeepsTheLastGoodState()
    {
        // What a node loading an old Redis log meets: events written before the limits existed.
        var p = new SessionProjection(new StateLimits(8, 4096));
        Apply(p, """{"type":"STATE_SNAPSHOT","snapshot":{"ok":1}}""");
        var deep = string.Concat(Enumerable.Repeat("{\"a\":", 20)) + "1" + new string('}', 20);
        Apply(p, $$"""{"type":"STATE_SNAPSHOT","snapshot":{{deep}}}""");
        Apply(p, """{"type":"STATE_DELTA","delta":[{"op":"copy","from":"","path":"/b"},{"op":"copy","from":"","path":"/b/b"},{"op":"copy","from":"","path":"/b/b/b"},{"op":"copy","from":"","path":"/b/b/b/b"},{"op":"copy","from":"","path":"/b/b/b/b/b"},{"op":"copy","from":"","path":"/b/b/b/b/b/b"},{"op":"copy","from":"","path":"/b/b/b/b/b/b/b"}]}""");

        var state = Snapshot(p)[1]["snapshot"]!;
        Assert.Equal("""{"ok":1}""", state.ToJsonString());
    }

    [Fact]
    public void CheckState_NamesTheLimitABatchWouldBreak_WithoutChangingTheState()
    {
        var p = new SessionProjection(new StateLimits(32, 10_000));
        Apply(p, """{"type":"STATE_SNAPSHOT","snapshot":{"x":"0123456789"}}""");
        var copies = new JsonArray([.. Enumerable.Range(0, 12).Select(i => (JsonNode)new JsonObject { ["op"] = "copy", ["from"] = "", ["path"] = "/c" + i })]);
        var error = p.CheckState([new JsonObject { ["type"] = "STATE_DELTA", ["delta"] = copies }]);

        Assert.Contains("MaxStateBytes", error, StringComparison.Ordinal);
        Assert.Equal("""{"x":"0123456789"}""", Snapshot(p)[1]["snapshot"]!.ToJsonString());
        Assert.Null(p.CheckState([new JsonObject { ["type"] = "STATE_DELTA", ["delta"] = new JsonArray(new JsonObject { ["op"] = "copy", ["from"] = "", ["path"] = "/c" }) }]));
    }

    [Fact]
    public void Apply_ALongConversationAndAnEndlessMessage_StayWithinTheBounds()
    {
        var p = new SessionProjection(StateLimits.None, maxMessages: 3, maxTextChars: 1_000);
        for (var i = 0; i < 5; i++)
        {
            Apply(p, $$"""{"type":"TEXT_MESSAGE_START","messageId":"m{{i}}","role":"user"}""");
            Apply(p, $$"""{"type":"TEXT_MESSAGE_CONTENT","messageId":"m{{i}}","delta":"message {{i}}"}""");
            Apply(p, $$"""{"type":"TEXT_MESSAGE_END","messageId":"m{{i}}"}""");
        }

        var messages = Snapshot(p)[0]["messages"]!.AsArray();
        Assert.Equal(["m2", "m3", "m4"], messages.Select(m => m!["id"]!.GetValue<string>()));
        Assert.False(p.HasMessage("m0"));

        // A start with no end: its text stops growing at the bound instead of with every delta.
        Apply(p, """{"type":"TEXT_MESSAGE_START","messageId":"endless","role":"assistant"}""");
        for (var i = 0; i < 100; i++)
        {
            Apply(p, $$"""{"type":"TEXT_MESSAGE_CONTENT","messageId":"endless","delta":"{{new string('x', 100)}}"}""");
        }

        var open = Snapshot(p).Single(e => e["type"]!.GetValue<string>() == "TEXT_MESSAGE_CONTENT");
        Assert.InRange(open["delta"]!.GetValue<string>().Length, 1_000, 1_100);
    }
}
