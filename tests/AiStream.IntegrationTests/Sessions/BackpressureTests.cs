using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>A slow watcher never slows the others, and loses no text: its deltas are merged, and past a hard limit it is dropped with a reason.</summary>
public sealed class BackpressureTests
{
    private static SessionEvent Content(long seq, string messageId, string delta) =>
        SessionEvent.Create(Text("TEXT_MESSAGE_CONTENT", messageId, delta), seq, 1_000 + seq, null);

    private static SessionEvent Other(long seq) => SessionEvent.Create(Custom("n", seq), seq, 1_000 + seq, null);

    private static async Task<List<SessionEvent>> DrainAsync(Subscriber subscriber)
    {
        var batch = new List<SessionEvent>();
        var (open, _) = await subscriber.DrainAsync(batch).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(open || batch.Count == 0);
        return batch;
    }

    [Fact]
    public async Task Enqueue_PastCoalesceThreshold_MergesConsecutiveDeltasOfOneMessage()
    {
        var subscriber = new Subscriber(coalesceThreshold: 8, hardLimit: 1_000);
        var words = Enumerable.Range(1, 50).Select(i => $"w{i} ").ToList();

        for (var i = 0; i < words.Count; i++)
        {
            Assert.True(subscriber.Enqueue(Content(i + 1, "m", words[i])));
        }

        var drained = await DrainAsync(subscriber);

        Assert.Equal(8, drained.Count); // seven as they came, then one holding the other 43
        Assert.Equal(Enumerable.Range(1, 7).Select(i => (long)i).Append(50), drained.Select(e => e.Seq));
        Assert.Equal(string.Concat(words), string.Concat(drained.Select(e => e.Delta)));
        Assert.Equal(42, subscriber.Coalesced);
        var merged = (JsonObject)JsonNode.Parse(drained[^1].Json)!;
        Assert.Equal("TEXT_MESSAGE_CONTENT", merged["type"]!.GetValue<string>());
        Assert.Equal("m", merged["messageId"]!.GetValue<string>());
        Assert.Equal(string.Concat(words.Skip(7)), merged["delta"]!.GetValue<string>());
        Assert.Equal(50, merged["seq"]!.GetValue<long>());
        Assert.Equal(1_050, merged["timestamp"]!.GetValue<long>());
        Assert.Null(subscriber.CloseReason);
    }

    [Fact]
    public async Task Enqueue_PastCoalesceThreshold_NeverMergesAcrossMessagesOrOtherEvents()
    {
        var subscriber = new Subscriber(coalesceThreshold: 2, hardLimit: 1_000);
        SessionEvent[] events =
        [
            Content(1, "a", "1"), Content(2, "a", "2"), Content(3, "b", "3"), Content(4, "b", "4"), Other(5), Content(6, "b", "6"),
            Content(7, "b", "7"), Content(8, "a", "8"),
        ];

        foreach (var e in events)
        {
            Assert.True(subscriber.Enqueue(e));
        }

        var drained = await DrainAsync(subscriber);

        Assert.Equal([1L, 2L, 4L, 5L, 7L, 8L], drained.Select(e => e.Seq));
        Assert.Equal(["1", "2", "34", null, "67", "8"], drained.Select(e => e.Delta));
    }

    [Fact]
    public async Task Enqueue_PastHardLimit_ReturnsFalseAndClosesWithAResumePosition()
    {
        var subscriber = new Subscriber(coalesceThreshold: 4, hardLimit: 10);

        var accepted = Enumerable.Range(1, 10).Select(i => subscriber.Enqueue(Other(i))).ToList();
        var overflow = subscriber.Enqueue(Other(11));
        var afterClose = subscriber.Enqueue(Other(12));

        Assert.All(accepted, Assert.True);
        Assert.False(overflow);
        Assert.False(afterClose);
        Assert.True(subscriber.IsClosed);
        Assert.Contains("resume after seq 10", subscriber.CloseReason, StringComparison.Ordinal);
        // What was queued is still delivered, then the writer learns the subscriber is closed.
        var drained = await DrainAsync(subscriber);
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), drained.Select(e => e.Seq));
        var batch = new List<SessionEvent>();
        Assert.False((await subscriber.DrainAsync(batch)).Open);
        Assert.Empty(batch);
    }

    [Fact]
    public async Task Enqueue_ManyLargeDeltas_MergesInLinearTime()
    {
        // A stalled watcher of a long answer: every delta after the threshold is merged into one growing event.
        var subscriber = new Subscriber(coalesceThreshold: 1, hardLimit: 1_000);
        var delta = new string('x', 1_000);
        var clock = Stopwatch.StartNew();

        for (var i = 1; i <= 2_000; i++)
        {
            subscriber.Enqueue(Content(i, "m", delta));
        }

        var elapsed = clock.Elapsed;
        var drained = await DrainAsync(subscriber);

        Assert.Equal(2_000 * delta.Length, drained.Sum(e => e.Delta!.Length));
        // 2 MB of text: linear merging takes milliseconds; re-serialising the merged text at each merge copies ~2 GB.
        Assert.True(elapsed < TimeSpan.FromSeconds(1), $"2,000 merges of 1 KB deltas took {elapsed}");
    }

    [Fact]
    public async Task Watch_StalledWatcherBesideHealthyOne_HealthyGetsEverythingPromptlyAndStalledTextIsComplete()
    {
        await using var gateway = new GatewayFactory(Sim()
            .With("AiStream:Sessions:CoalesceThreshold", 8)
            .With("AiStream:Sessions:SubscriberHardLimit", 1_000_000));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var healthy = await SessionWatcher.OpenAsync(http, session);
        using var stalled = await SessionWatcher.OpenAsync(http, session); // headers read, body never read until the end
        await healthy.ReadCountAsync(2);

        // 20,000 deltas (about 2.5 MB of SSE, more than the socket buffers take at once) stall the second watcher's writer.
        // The deltas stay small: merging is quadratic in the merged text (see Enqueue_ManyLargeDeltas_MergesInLinearTime).
        const int Deltas = 20_000;
        var pad = new string('x', 10);
        var publishing = Task.Run(async () =>
        {
            await PublishAsync(http, session, Text("TEXT_MESSAGE_START", "m", role: "assistant"));
            var last = 0L;
            for (var batch = 0; batch < Deltas / 1_000; batch++)
            {
                last = (await PublishAsync(http, session, Enumerable.Range(batch * 1_000, 1_000).Select(i => Text("TEXT_MESSAGE_CONTENT", "m", $"{i}{pad} ")).ToArray()))[^1];
            }

            await PublishAsync(http, session, Text("TEXT_MESSAGE_END", "m"));
            return last;
        });
        var text = new StringBuilder();
        var healthyEvents = await healthy.ReadUntilAsync(e =>
        {
            if (e.Type == "TEXT_MESSAGE_CONTENT")
            {
                text.Append(e.Str("delta"));
            }

            return e.Type == "TEXT_MESSAGE_END";
        });
        var lastDeltaSeq = await publishing;
        var expected = string.Concat(Enumerable.Range(0, Deltas).Select(i => $"{i}{pad} "));

        // The healthy watcher's latency is unaffected: 2000 events that cannot be merged all arrive, then each of 20 pings
        // arrives well within a second of its publish.
        var clock = Stopwatch.StartNew();
        var custom = await PublishAsync(http, session, Enumerable.Range(0, 1_000).Select(i => Custom("n", i)).ToArray());
        custom = [.. custom, .. await PublishAsync(http, session, Enumerable.Range(1_000, 1_000).Select(i => Custom("n", i)).ToArray())];
        var customs = await healthy.ReadCountAsync(2_000);
        var slowest = TimeSpan.Zero;
        for (var i = 0; i < 20; i++)
        {
            var sent = Stopwatch.StartNew();
            var seq = (await PublishAsync(http, session, Custom("ping", i)))[0];
            Assert.Equal(seq, (await healthy.NextAsync())!.Seq);
            slowest = TimeSpan.FromTicks(Math.Max(slowest.Ticks, sent.Elapsed.Ticks));
        }

        var healthyElapsed = clock.Elapsed;

        // Now the stalled watcher reads: its text is complete, in fewer, larger events, and it ends at the same position.
        var stalledEvents = await stalled.ReadUntilAsync(e => e.Type == "CUSTOM" && e.Str("name") == "ping" && e.Data["value"]!.GetValue<int>() == 19);
        var stalledText = TextOf(stalledEvents, "m");

        Assert.Equal(expected, text.ToString());
        Assert.Equal(lastDeltaSeq, healthyEvents.Last(e => e.Type == "TEXT_MESSAGE_CONTENT").Seq);
        Assert.Equal(custom, customs.Select(e => e.Seq));
        Assert.True(healthyElapsed < TimeSpan.FromSeconds(3), $"2000 events and 20 pings took {healthyElapsed}");
        Assert.True(slowest < TimeSpan.FromSeconds(1), $"the slowest ping took {slowest}");
        Assert.Equal(expected.Length, stalledText.Length);
        Assert.Equal(expected, stalledText);
        var stalledContent = stalledEvents.Where(e => e.Type == "TEXT_MESSAGE_CONTENT").ToList();
        Assert.True(stalledContent.Count < Deltas, $"the stalled watcher got all {stalledContent.Count} deltas unmerged");
        Assert.Equal(lastDeltaSeq, stalledContent[^1].Seq);
        var stalledSeqs = stalled.Live.Select(e => e.Seq).ToList();
        Assert.Equal(stalledSeqs.Order().Distinct(), stalledSeqs); // merged events skip positions, but never repeat or go back
        Assert.Equal(custom, stalledEvents.Where(e => e.Type == "CUSTOM" && e.Str("name") == "n").Select(e => e.Seq));
        Assert.Empty(stalled.Comments);
    }
}
