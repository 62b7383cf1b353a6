using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary><c>/hubs/sessions</c> with the official .NET SignalR client: the same log, JSON and positions as the SSE watch.</summary>
public sealed class SessionHubTests
{
    private static JsonElement RunRequest(string content) => JsonSerializer.SerializeToElement(new JsonObject
    {
        ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
    });

    [Fact]
    public async Task JoinThenStartRun_OverTheHub_DeliversTheRunWithTheSameJsonAndSeqsAsSse()
    {
        await using var gateway = new GatewayFactory(Sim(tokensPerSecond: 200));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var sse = await SessionWatcher.OpenAsync(http, session);
        await using var hub = await SessionHubClient.ConnectAsync(http.BaseAddress!, statefulReconnect: true);

        var join = await hub.Connection.InvokeAsync<JsonElement>("Join", session, null);
        var runId = await hub.Connection.InvokeAsync<string>("StartRun", session, RunRequest("hi"));
        var overHub = await hub.ReadUntilAsync(session, e => e.Type == "RUN_FINISHED");
        var overSse = await sse.ReadUntilTypeAsync("RUN_FINISHED");

        Assert.Equal(session, join.GetProperty("sessionId").GetString());
        Assert.True(join.GetProperty("snapshot").GetBoolean());
        var head = join.GetProperty("headSeq").GetInt64();
        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT"], overHub.Take(2).Select(e => e.Type));
        Assert.All(overHub.Take(2), e => Assert.Equal(head, e.Seq));
        var run = overHub.Skip(2).ToList();
        Assert.Equal(["TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "RUN_STARTED", "TEXT_MESSAGE_START"], run.Take(5).Select(e => e.Type));
        Assert.Equal(runId, run[3].Str("runId"));
        Assert.Equal(["TEXT_MESSAGE_END", "RUN_FINISHED"], run.TakeLast(2).Select(e => e.Type));
        Assert.Equal(runId, run[^1].Str("runId"));
        Assert.Equal("success", run[^1].OutcomeType);
        // Same positions and the same bytes as the SSE watcher, presence included.
        var hubLive = hub.All.Where(x => x.SessionId == session && x.Event.Seq > head).Select(x => x.Event).ToList();
        AssertConsecutive(hubLive, head + 1);
        Assert.Equal(sse.Events.Where(e => e.Seq > head && e.Seq <= hubLive[^1].Seq).Select(e => e.Json), hubLive.Select(e => e.Json));
        Assert.Equal(TextOf(overSse, AssistantMessageId(overSse)), TextOf(run, AssistantMessageId(run)));
    }

    [Fact]
    public async Task Join_TwoSessionsOnOneConnection_TagsEventsPublishReturnsSeqAndLeaveStopsDelivery()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var first = NewSessionId();
        var second = NewSessionId();
        await using var hub = await SessionHubClient.ConnectAsync(http.BaseAddress!, statefulReconnect: true);
        await hub.Connection.InvokeAsync<JsonElement>("Join", first, null);
        await hub.Connection.InvokeAsync<JsonElement>("Join", second, null);

        var one = await hub.Connection.InvokeAsync<long>("Publish", first, JsonSerializer.SerializeToElement(Custom("to-first", 1)));
        var two = await hub.Connection.InvokeAsync<long>("Publish", second, JsonSerializer.SerializeToElement(Custom("to-second", 2)));
        var gotOne = (await hub.ReadUntilAsync(first, e => e.Type == "CUSTOM"))[^1];
        var gotTwo = (await hub.ReadUntilAsync(second, e => e.Type == "CUSTOM"))[^1];

        await hub.Connection.InvokeAsync("Leave", second);
        var unseen = await PublishAsync(http, second, Custom("after-leave", 3));
        var marker = await PublishAsync(http, first, Custom("marker", 4));
        await hub.ReadUntilAsync(first, e => e.Str("name") == "marker");

        Assert.Equal("to-first", gotOne.Str("name"));
        Assert.Equal(one, gotOne.Seq);
        Assert.Equal("to-second", gotTwo.Str("name"));
        Assert.Equal(two, gotTwo.Seq);
        Assert.True(marker[0] > one);
        Assert.DoesNotContain(hub.All, x => x.SessionId == second && x.Event.Seq >= unseen[0]);
        Assert.All(hub.All.Where(x => x.SessionId == first), x => Assert.DoesNotContain("second", x.Event.Str("name") ?? "", StringComparison.Ordinal));
        Assert.All(hub.All.Where(x => x.SessionId == second), x => Assert.DoesNotContain("first", x.Event.Str("name") ?? "", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Join_WithAfterSeq_ReplaysExactlyTheEventsAfterIt()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        var seqs = await PublishAsync(http, session, Enumerable.Range(1, 10).Select(i => Custom("n", i)).ToArray());
        await using var hub = await SessionHubClient.ConnectAsync(http.BaseAddress!, statefulReconnect: true);

        var join = await hub.Connection.InvokeAsync<JsonElement>("Join", session, seqs[3]);
        var replay = await hub.ReadUntilAsync(session, e => e.Seq == seqs[^1]);
        using var sse = await SessionWatcher.OpenAsync(http, session, after: seqs[3]);
        var overSse = await sse.ReadCountAsync(6);

        Assert.False(join.GetProperty("snapshot").GetBoolean());
        Assert.Equal(seqs[^1], join.GetProperty("headSeq").GetInt64());
        Assert.Equal(seqs.Skip(4), replay.Select(e => e.Seq));
        Assert.Equal(Enumerable.Range(5, 6), replay.Select(e => e.Data["value"]!.GetValue<int>()));
        Assert.Equal(overSse.Select(e => e.Json), replay.Select(e => e.Json));
    }

    [Fact]
    public async Task Publish_InvalidEventOverTheHub_ThrowsHubExceptionAndAppendsNothing()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        await using var hub = await SessionHubClient.ConnectAsync(http.BaseAddress!, statefulReconnect: true);

        var error = await Assert.ThrowsAsync<HubException>(() =>
            hub.Connection.InvokeAsync<long>("Publish", session, JsonSerializer.SerializeToElement(new JsonObject { ["type"] = "NOPE" })));

        Assert.Contains("Invalid event", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, (await InfoAsync(http, session))["headSeq"]!.GetValue<long>());
    }
}
