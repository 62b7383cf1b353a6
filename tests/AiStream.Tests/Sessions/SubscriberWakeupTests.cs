using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.Tests.Sessions;

/// <summary>How appends wake the writers of a session's watchers.</summary>
public sealed class SubscriberWakeupTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-29T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private static JsonObject Content(string delta) => new() { ["type"] = "TEXT_MESSAGE_CONTENT", ["messageId"] = "m", ["delta"] = delta };

    [Fact]
    public async Task InlineWake_RunsTheWaiterOnTheWakingThreadBeforeReturning()
    {
        var signal = new Subscriber(1_000, 4_096);
        var ranOn = 0;
        var waiter = WaitThenRecord();
        var setterThread = 0;
        var ranBeforeSetReturned = 0;
        var setter = new Thread(() =>
        {
            setterThread = Environment.CurrentManagedThreadId;
            signal.Wake(inline: true);
            ranBeforeSetReturned = Volatile.Read(ref ranOn);
        });
        setter.Start();
        Assert.True(setter.Join(Patience));
        await waiter.WaitAsync(Patience);
        Assert.Equal(setterThread, ranOn);
        Assert.Equal(setterThread, ranBeforeSetReturned);

        async Task WaitThenRecord()
        {
            await signal.WaitAsync().ConfigureAwait(false);
            Volatile.Write(ref ranOn, Environment.CurrentManagedThreadId);
        }
    }

    [Fact]
    public async Task DefaultWake_LeavesTheWaiterToTheThreadPool()
    {
        var signal = new Subscriber(1_000, 4_096);
        var ranOnPool = false;
        Thread? ranOn = null;
        var waiter = WaitThenRecord();
        var setter = new Thread(() => signal.Wake());
        setter.Start();
        Assert.True(setter.Join(Patience));
        await waiter.WaitAsync(Patience);
        // Thread objects, not managed ids: an id is reused once its thread has ended.
        Assert.True(ranOnPool);
        Assert.NotSame(setter, ranOn);

        async Task WaitThenRecord()
        {
            await signal.WaitAsync().ConfigureAwait(false);
            ranOn = Thread.CurrentThread;
            ranOnPool = Thread.CurrentThread.IsThreadPoolThread;
        }
    }

    [Fact]
    public async Task WakeBeforeTheWait_IsRememberedOnce()
    {
        var subscriber = new Subscriber(1_000, 4_096);
        subscriber.Wake();
        subscriber.Wake();
        Assert.True(subscriber.WaitAsync().AsTask().IsCompleted);
        var second = subscriber.WaitAsync().AsTask();
        Assert.False(second.IsCompleted);
        subscriber.Wake();
        await second.WaitAsync(Patience);
    }

    [Fact]
    public async Task Append_WakesEveryWatcherOfALargeSession_EachGetsEveryEventOnceInOrder()
    {
        // More watchers than one wake-up group holds, so several groups share the work.
        var log = new SessionLog(new SessionsOptions(), _time);
        var watchers = Enumerable.Range(0, (SubscriberWakeups.GroupSize * 3) + 5).Select(_ => new Subscriber(1_000, 4_096)).ToList();
        foreach (var watcher in watchers)
        {
            log.Subscribe(0, watcher);
        }

        var readers = watchers.Select(w => ReadAsync(w, 30)).ToList();
        for (var i = 0; i < 30; i++)
        {
            log.Append([Content("t" + i)], "run", null);
        }

        var all = await Task.WhenAll(readers).WaitAsync(Patience);
        foreach (var seqs in all)
        {
            Assert.Equal(Enumerable.Range(1, 30).Select(i => (long)i), seqs);
        }
    }

    [Fact]
    public async Task Append_PastTheHardLimit_ClosesTheWatcherAndWakesItsWriterToEnd()
    {
        var log = new SessionLog(new SessionsOptions(), _time);
        var watcher = new Subscriber(coalesceThreshold: 1_000, hardLimit: 2);
        log.Subscribe(0, watcher);
        for (var i = 0; i < 3; i++)
        {
            log.Append([Content("t" + i)], "run", null);
        }

        var batch = new List<SessionEvent>();
        var (open, _) = await watcher.DrainAsync(batch).AsTask().WaitAsync(Patience);
        Assert.True(open);
        Assert.Equal([1L, 2L], batch.Select(e => e.Seq));
        batch.Clear();
        (open, _) = await watcher.DrainAsync(batch).AsTask().WaitAsync(Patience);
        Assert.False(open);
        Assert.Contains("fell 2 events behind", watcher.CloseReason, StringComparison.Ordinal);
        Assert.Equal(0, log.Watchers);
    }

    private static async Task<List<long>> ReadAsync(Subscriber subscriber, int expected)
    {
        var seqs = new List<long>();
        var batch = new List<SessionEvent>();
        while (seqs.Count < expected)
        {
            var (open, _) = await subscriber.DrainAsync(batch).ConfigureAwait(false);
            Assert.True(open);
            seqs.AddRange(batch.Select(e => e.Seq));
            batch.Clear();
        }

        return seqs;
    }
}
