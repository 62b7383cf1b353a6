using System.Text;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.Tests.Sessions;

/// <summary>The parts of the session log a node uses to mirror a shared (Redis) log.</summary>
public sealed class SessionLogTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-29T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private SessionLog NewLog() => new(new SessionsOptions(), _time);

    private static (SessionEvent, JsonObject) Stored(long seq, string json, string? runId = null)
    {
        var body = JsonNode.Parse(json)!.AsObject();
        body["seq"] = seq;
        return SessionEvent.FromStored(Encoding.UTF8.GetBytes(body.ToJsonString()), seq, runId, 1000);
    }

    private static List<SessionEvent> Drain(Subscriber subscriber)
    {
        var batch = new List<SessionEvent>();
        var drained = subscriber.DrainAsync(batch);
        Assert.True(drained.IsCompleted);
        return batch;
    }

    [Fact]
    public void ApplyStored_BatchSeenTwice_IsDeliveredOnceInOrderWithItsOwnBytes()
    {
        var log = NewLog();
        var subscriber = new Subscriber(64, 4096);
        log.Subscribe(0, subscriber);
        (SessionEvent, JsonObject)[] batch =
        [
            Stored(1, """{"type":"TEXT_MESSAGE_START","messageId":"m","role":"assistant","timestamp":5}"""),
            Stored(2, """{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"hi","timestamp":6}"""),
        ];

        log.ApplyStored(batch);
        log.ApplyStored(batch); // the writer's own echo
        log.ApplyStored([Stored(3, """{"type":"TEXT_MESSAGE_END","messageId":"m","timestamp":7}""")]);

        var events = Drain(subscriber);
        Assert.Equal([1L, 2L, 3L], events.Select(e => e.Seq));
        Assert.Equal(3, log.Head);
        Assert.Contains("\"seq\":2", Encoding.UTF8.GetString(events[1].Json), StringComparison.Ordinal);
        Assert.Equal("hi", log.Messages().Single()["content"]!.GetValue<string>());
    }

    [Fact]
    public void Checkpoint_RestoredIntoANewLog_GivesTheSameSnapshotAtTheSamePosition()
    {
        var log = NewLog();
        log.Append([AgUi.Event(AgUi.StateSnapshot, ("snapshot", new JsonObject { ["mode"] = "draft" }))], null, null);
        log.Append([AgUi.Event(AgUi.Custom, ("name", "presence.join"), ("value", new JsonObject { ["id"] = "ann", ["name"] = "Ann", ["kind"] = "user" }))], null, null);
        log.Append([AgUi.Event(AgUi.RunStarted, ("threadId", "s"), ("runId", "r1"))], "r1", null);
        log.Append([AgUi.Event(AgUi.TextMessageStart, ("messageId", "m1"), ("role", "assistant"))], "r1", null);
        log.Append([AgUi.Event(AgUi.TextMessageContent, ("messageId", "m1"), ("delta", "half a sen"))], "r1", null);

        var (seq, checkpoint) = log.Checkpoint();
        var restored = NewLog();
        restored.Restore(seq, checkpoint.Select(c => ((JsonObject)JsonNode.Parse(c.Body.ToJsonString())!, c.RunId)), complete: true);

        Assert.Equal(5, restored.Head);
        Assert.Equal(["r1"], restored.ActiveRuns());
        Assert.Equal(["m1"], restored.OpenMessages("r1"));
        var fresh = new Subscriber(64, 4096);
        var snapshot = restored.Subscribe(null, fresh);
        Assert.True(snapshot.IsSnapshot);
        var types = snapshot.Events.Select(e => e.ToJsonObject()).ToList();
        Assert.Equal("draft", types.Single(e => e["type"]!.GetValue<string>() == AgUi.StateSnapshot)["snapshot"]!["mode"]!.GetValue<string>());
        Assert.Equal("Ann", types.Single(e => e["name"]?.GetValue<string>() == "presence.snapshot")["value"]!["members"]![0]!["name"]!.GetValue<string>());
        Assert.Equal("half a sen", types.Single(e => e["type"]!.GetValue<string>() == AgUi.TextMessageContent)["delta"]!.GetValue<string>());
        Assert.All(snapshot.Events, e => Assert.Equal(5, e.Seq));
    }

    [Fact]
    public void TakeOver_SubscribersOfTheOldLog_GetTheNoticeThenTheNewSnapshotThenItsLiveEvents()
    {
        var old = NewLog();
        var subscriber = new Subscriber(64, 4096);
        old.Subscribe(0, subscriber);
        var fresh = NewLog();
        fresh.Restore(40, [], complete: true);

        fresh.TakeOver(old, AgUi.Event(AgUi.Custom, ("name", "stream.gap"), ("value", new JsonObject { ["reason"] = "gap" })));
        fresh.ApplyStored([Stored(41, """{"type":"CUSTOM","name":"x","timestamp":1}""")]);

        var events = Drain(subscriber);
        Assert.Equal("stream.gap", events[0].ToJsonObject()["name"]!.GetValue<string>());
        Assert.Equal(AgUi.MessagesSnapshot, events[1].Type);
        Assert.Equal(41, events[^1].Seq);
        Assert.All(events.SkipLast(1), e => Assert.Equal(40, e.Seq));
        Assert.Equal(1, fresh.Watchers);
        Assert.Equal(0, old.Watchers);
    }
}
