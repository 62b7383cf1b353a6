using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.Tests.Sessions;

/// <summary>A subscriber that follows the session's active run (the AI SDK's resume): its events from its start, then live.</summary>
public sealed class ActiveRunSubscribeTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-12-05T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private static JsonObject Started(string runId) => AgUi.Event(AgUi.RunStarted, ("threadId", "s"), ("runId", runId));

    private static JsonObject Text(string type, string messageId, string? delta = null) =>
        delta is null ? AgUi.Event(type, ("messageId", messageId), ("role", "assistant")) : AgUi.Event(type, ("messageId", messageId), ("delta", delta));

    private static JsonObject Finished(string runId) => AgUi.Event(AgUi.RunFinished, ("threadId", "s"), ("runId", runId), ("outcome", new JsonObject { ["type"] = "success" }));

    private static JsonObject Join(string id) => AgUi.Event(AgUi.Custom, ("name", "presence.join"), ("value", new JsonObject { ["id"] = id, ["name"] = id, ["kind"] = "user" }));

    private static List<SessionEvent> Drain(Subscriber subscriber)
    {
        var batch = new List<SessionEvent>();
        subscriber.TryDrain(batch);
        return batch;
    }

    [Fact]
    public void TwoRunsInterleaved_FollowsTheNewestActiveFromItsStart_AndOnlyItsEventsLive()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        log.Append([Started("r1")], "r1", null);
        log.Append([Text(AgUi.TextMessageStart, "m1")], "r1", null);
        log.Append([Started("r2")], "r2", null);
        log.Append([Join("ann")], null, null);
        log.Append([Text(AgUi.TextMessageStart, "m2")], "r2", null);
        log.Append([Text(AgUi.TextMessageContent, "m1", "one")], "r1", null);
        log.Append([Text(AgUi.TextMessageContent, "m2", "two")], "r2", null);
        log.Append([Finished("r1")], "r1", null);

        var subscriber = new Subscriber(1_000, 4_096) { FollowsActiveRun = true };
        var first = log.Subscribe(null, subscriber);

        Assert.Equal("r2", first.Run);
        Assert.False(first.IsSnapshot);
        Assert.Equal([AgUi.RunStarted, AgUi.TextMessageStart, AgUi.TextMessageContent], first.Events.Select(e => e.Type));
        Assert.All(first.Events, e => Assert.Equal("r2", e.RunId));
        Assert.Equal([3L, 5L, 7L], first.Events.Select(e => e.Seq));

        log.Append([Text(AgUi.TextMessageContent, "m2", " more")], "r2", null);
        log.Append([Join("bob")], null, null);
        log.Append([Started("r3")], "r3", null);
        log.Append([Finished("r2")], "r2", null);
        var live = Drain(subscriber);
        Assert.Equal([AgUi.TextMessageContent, AgUi.RunFinished], live.Select(e => e.Type));
        Assert.Equal([9L, 12L], live.Select(e => e.Seq));
    }

    [Fact]
    public void ARunsOwnStream_SubscribedBeforeItStarts_GetsNoCatchUp_ThenOnlyThatRun()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        log.Append([Join("ann")], null, null);
        var subscriber = new Subscriber(1_000, 4_096).ForRun("r2");

        var first = log.Subscribe(null, subscriber);
        log.Append([Started("r1")], "r1", null);
        log.Append([Started("r2")], "r2", null);

        Assert.Empty(first.Events);
        Assert.Equal([("r2", 3L)], Drain(subscriber).Select(e => (e.RunId!, e.Seq)));
    }

    [Fact]
    public void ARunStartedByAPublisher_IsNotFollowed_TheGatewaysOwnRunIs()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        log.Append([Started("mine")], "mine", null);
        log.Append([Started("published")], null, null); // a client's RUN_STARTED: nothing of it is stored under its id

        var subscriber = new Subscriber(1_000, 4_096) { FollowsActiveRun = true };
        Assert.Equal("mine", log.Subscribe(null, subscriber).Run);

        var alone = new SessionLog(new SessionsOptions(), _time);
        alone.Append([Started("published")], null, null);
        Assert.Null(alone.Subscribe(null, new Subscriber(1_000, 4_096) { FollowsActiveRun = true }).Run);
    }

    [Fact]
    public void APublishedEndOfTheGatewaysRun_DoesNotEndIt_ItsOwnEndDoes()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        log.Append([Started("r1")], "r1", null);
        log.Append([Finished("r1")], null, null); // someone with write publishes the run's end

        Assert.Equal(["r1"], log.Info("s").GatewayRuns);
        Assert.Equal("r1", log.Subscribe(null, new Subscriber(1_000, 4_096) { FollowsActiveRun = true }).Run);

        log.Append([Finished("r1")], "r1", null);
        Assert.Empty(log.Info("s").GatewayRuns);
        Assert.Empty(log.Info("s").ActiveRuns);
    }

    [Fact]
    public void PublishedStarts_AreSummarisedUpToABound_TheGatewaysRunsAlways()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        for (var i = 0; i < 1_200; i++)
        {
            log.Append([Started("fake" + i)], null, null);
        }

        log.Append([Started("mine")], "mine", null);

        Assert.Equal(1_001, log.Info("s").ActiveRuns.Count);
        Assert.Equal(["mine"], log.Info("s").GatewayRuns);
    }

    [Fact]
    public void NoRunInProgress_RegistersNothing()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        log.Append([Started("r1")], "r1", null);
        log.Append([Finished("r1")], "r1", null);

        var subscriber = new Subscriber(1_000, 4_096) { FollowsActiveRun = true };
        var first = log.Subscribe(null, subscriber);

        Assert.Null(first.Run);
        Assert.Empty(first.Events);
        log.Append([Started("r2")], "r2", null);
        Assert.Empty(Drain(subscriber));
    }

    [Fact]
    public void TheRunsStartLeftTheWindow_TheRunsPartOfTheCatchUpStandsInForTheReplay()
    {
        var log = new SessionLog(new SessionsOptions { MaxEvents = 3 }, _time);
        log.Append([Started("r1")], "r1", null);
        log.Append([Text(AgUi.TextMessageStart, "m1")], "r1", null);
        foreach (var word in new[] { "a", "b", "c", "d" })
        {
            log.Append([Text(AgUi.TextMessageContent, "m1", word)], "r1", null);
        }

        var subscriber = new Subscriber(1_000, 4_096) { FollowsActiveRun = true };
        var first = log.Subscribe(null, subscriber);

        Assert.Equal("r1", first.Run);
        Assert.True(first.IsSnapshot);
        Assert.Equal([AgUi.RunStarted, AgUi.TextMessageStart, AgUi.TextMessageContent], first.Events.Select(e => e.Type));
        Assert.Equal("abcd", first.Events[2].Delta);
        log.Append([Text(AgUi.TextMessageContent, "m1", "e")], "r1", null);
        Assert.Equal("e", Assert.Single(Drain(subscriber)).Delta);
    }
}
