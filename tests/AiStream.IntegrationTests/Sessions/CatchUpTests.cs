using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>Resume with Last-Event-ID or ?after=, the late joiner's snapshot, and a position the log no longer keeps.</summary>
public sealed class CatchUpTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Watch_ResumeAfterForcedDisconnectMidRun_ContinuesWithNoGapAndNoDuplicate(bool withLastEventIdHeader)
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 100));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var a = await SessionWatcher.OpenAsync(http, session);
        var b = await SessionWatcher.OpenAsync(http, session);

        var runId = await StartRunAsync(http, session);
        // The user's message is one content event; then four of the assistant's.
        var before = await b.ReadUntilAsync(_ => b.Seen.Count(e => e.Type == "TEXT_MESSAGE_CONTENT") >= 5);
        var last = b.Events[^1].Id;
        var bBefore = b.Live.ToList();
        b.Dispose(); // the socket closes mid-run
        var beforeRunEnded = await InfoAsync(http, session);
        using var resumed = withLastEventIdHeader
            ? await SessionWatcher.OpenAsync(http, session, lastEventId: last)
            : await SessionWatcher.OpenAsync(http, session, after: last);
        var after = await resumed.ReadUntilTypeAsync("RUN_FINISHED");
        var whole = await a.ReadUntilTypeAsync("RUN_FINISHED");

        Assert.Contains(runId, ActiveRuns(beforeRunEnded)); // the disconnect really was mid-run
        Assert.Null(resumed.SnapshotHead); // a replay, not a snapshot
        Assert.Equal(last + 1, resumed.Events[0].Seq);
        // Every position B saw, before and after the disconnect, once each and in order.
        AssertConsecutive(bBefore.Concat(resumed.Events), b.SnapshotHead + 1);
        var messageId = AssistantMessageId(whole);
        var text = TextOf(whole, messageId);
        Assert.True(text.Length > 100, text);
        Assert.Equal(text, TextOf(before.Concat(after), messageId));
        // Event by event, B's resumed tail is exactly A's tail: same positions, same bytes.
        Assert.Equal(whole.Where(e => e.Seq > last).Select(e => e.Json), after.Select(e => e.Json));
        Assert.Equal(runId, after[^1].Str("runId"));
        Assert.Equal("success", after[^1].OutcomeType);
    }

    [Fact]
    public async Task Watch_LateJoinerWithNoPosition_GetsSnapshotAtHeadThenLiveTail()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 100));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var early = await SessionWatcher.OpenAsync(http, session);
        var runId = await StartRunAsync(http, session, "hi");
        await early.ReadUntilAsync(_ => early.Seen.Count(e => e.Type == "TEXT_MESSAGE_CONTENT") >= 9); // the user's and 8 of the answer's

        using var late = await SessionWatcher.OpenAsync(http, session);
        var snapshot = await late.ReadCountAsync(5);
        var live = await late.ReadUntilTypeAsync("RUN_FINISHED");
        var whole = await early.ReadUntilTypeAsync("RUN_FINISHED");
        var all = early.Seen;

        var head = snapshot[0].Id;
        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT", "RUN_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT"], snapshot.Select(e => e.Type));
        Assert.All(snapshot, e => Assert.Equal(head, e.Id));
        var messages = snapshot[0].Data["messages"]!.AsArray();
        var user = Assert.Single(messages);
        Assert.Equal("user", user!["role"]!.GetValue<string>());
        Assert.Equal("hi", user["content"]!.GetValue<string>());
        Assert.Equal(new JsonObject(), snapshot[1].Data["snapshot"], JsonNode.DeepEquals);
        Assert.Equal(runId, snapshot[2].Str("runId"));
        Assert.Equal(session, snapshot[2].Str("threadId"));
        var messageId = AssistantMessageId(all);
        Assert.Equal(messageId, snapshot[3].Str("messageId"));
        Assert.Equal("assistant", snapshot[3].Str("role"));
        Assert.Equal(messageId, snapshot[4].Str("messageId"));
        // The text so far is exactly what the log held at the head, and the live tail starts right after it.
        Assert.Equal(TextOf(all.Where(e => e.Seq <= head), messageId), snapshot[4].Str("delta"));
        AssertConsecutive(late.Live, head + 1);
        Assert.Equal(all.Where(e => e.Seq > head).Select(e => e.Json), live.Select(e => e.Json));
        Assert.Equal(head, late.Events.Single(e => e.Str("name") == "presence.snapshot").Id);
        Assert.Equal(TextOf(all, messageId), TextOf(snapshot.Concat(live), messageId));
        Assert.Contains(live, e => e.Type == "TEXT_MESSAGE_CONTENT"); // it joined mid-run, not after
    }

    [Fact]
    public async Task Watch_SessionWithTenThousandEvents_NewWatcherGetsTwoSnapshotEventsNotTheLog()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        await PublishAsync(http, session, Text("TEXT_MESSAGE_START", "m1", role: "user"), Text("TEXT_MESSAGE_CONTENT", "m1", "hello"), Text("TEXT_MESSAGE_END", "m1"));
        for (var batch = 0; batch < 10; batch++)
        {
            await PublishAsync(http, session, Enumerable.Range(0, 1000).Select(i => Custom("n", batch * 1000 + i)).ToArray());
        }

        const long Head = 10_003;
        foreach (long? after in new long?[] { null, 0, 5_000 })
        {
            using var watcher = await SessionWatcher.OpenAsync(http, session, after: after);
            var snapshot = await watcher.ReadCountAsync(2);
            var marker = await PublishAsync(http, session, Custom("marker", after));
            var next = await watcher.NextAsync();

            Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT"], snapshot.Select(e => e.Type));
            Assert.All(snapshot, e => Assert.True(e.Id >= Head, $"snapshot id {e.Id}"));
            var message = Assert.Single(snapshot[0].Data["messages"]!.AsArray());
            Assert.Equal("hello", message!["content"]!.GetValue<string>());
            Assert.Equal("marker", next!.Str("name"));
            Assert.Equal(marker[0], next.Seq);
            // Before the marker: the snapshot (messages, state, presence) and the watcher's own presence.join, no more.
            Assert.InRange(watcher.Events.Count, 4, 6);
            AssertConsecutive(watcher.Live, snapshot[0].Id + 1);
        }
    }

    [Fact]
    public async Task Watch_PositionOlderThanTheLogKeeps_GetsSnapshotNotASilentGap()
    {
        await using var gateway = new GatewayFactory(Sim().With("AiStream:Sessions:MaxEvents", 50));
        using var http = gateway.Client();
        var session = NewSessionId();
        await PublishAsync(http, session, Text("TEXT_MESSAGE_START", "early", role: "user"), Text("TEXT_MESSAGE_CONTENT", "early", "said first"),
            Text("TEXT_MESSAGE_END", "early"));
        await PublishAsync(http, session, Enumerable.Range(0, 97).Select(i => Custom("n", i)).ToArray());
        var info = await InfoAsync(http, session);

        using var tooOld = await SessionWatcher.OpenAsync(http, session, after: 10);
        var snapshot = await tooOld.ReadCountAsync(2);
        using var kept = await SessionWatcher.OpenAsync(http, session, after: 60);
        var replay = await kept.ReadCountAsync(40);
        var marker = await PublishAsync(http, session, Custom("marker", null));

        Assert.Equal(100, info["headSeq"]!.GetValue<long>());
        Assert.Equal(51, info["firstSeq"]!.GetValue<long>());
        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT"], snapshot.Select(e => e.Type));
        Assert.All(snapshot, e => Assert.Equal(100, e.Id));
        var message = Assert.Single(snapshot[0].Data["messages"]!.AsArray());
        Assert.Equal("said first", message!["content"]!.GetValue<string>());
        Assert.Equal(marker[0], (await tooOld.NextAsync())!.Seq);
        AssertConsecutive(tooOld.Live, 101);
        // A position the log still has is replayed exactly, not summarised.
        Assert.Equal(Enumerable.Range(61, 40).Select(i => (long)i), replay.Select(e => e.Seq));
        Assert.All(replay, e => Assert.Equal("CUSTOM", e.Type));
        Assert.Equal(marker[0], (await kept.NextAsync())!.Seq);
        AssertConsecutive(kept.Events, 61);
    }
}
