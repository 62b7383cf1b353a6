using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using AiStream.Gateway.Transports;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using OptionsFactory = Microsoft.Extensions.Options.Options;

namespace AiStream.Tests.Transports;

/// <summary>One timer serves every watch: heartbeats at each watch's own interval, presence renewed until it stops.</summary>
public sealed class WatchTickerTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-29T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private readonly InMemorySessionStore _sessions;
    private readonly InMemoryPresenceStore _presence;
    private readonly WatchTicker _ticker;

    public WatchTickerTests()
    {
        var presenceOptions = OptionsFactory.Create(new PresenceOptions { TtlSeconds = 30, LeaveGraceSeconds = 0 });
        _sessions = new InMemorySessionStore(OptionsFactory.Create(new SessionsOptions()), _time, NullLogger<InMemorySessionStore>.Instance);
        _presence = new InMemoryPresenceStore(_sessions, presenceOptions, _time, NullLogger<InMemoryPresenceStore>.Instance);
        _ticker = new WatchTicker(_time, _presence, OptionsFactory.Create(new TransportsOptions { SseHeartbeatSeconds = 15 }));
    }

    public void Dispose()
    {
        _ticker.Dispose();
        _presence.Dispose();
        _sessions.Dispose();
    }

    [Fact]
    public async Task EachWatch_GetsAHeartbeatEveryIntervalFromItsOwnStart_WithinAStep()
    {
        // Intervals of 15 s; the ticker steps every 0.5 s (a twentieth of the 10 s presence renewal).
        var early = new Subscriber(1000, 2000);
        _ticker.Add(early, "s", "a", "c1");
        await AdvanceToAsync(5);
        var late = new Subscriber(1000, 2000);
        _ticker.Add(late, "s", "b", "c2");
        var earlyBeat = early.DrainAsync([]).AsTask();
        var lateBeat = late.DrainAsync([]).AsTask();

        await AdvanceToAsync(14.9);
        Assert.False(await CompletesAsync(earlyBeat, 50));
        await AdvanceToAsync(15.6);
        Assert.True(await CompletesAsync(earlyBeat, 5000));
        Assert.Equal((true, true), await earlyBeat);
        Assert.False(await CompletesAsync(lateBeat, 50));

        await AdvanceToAsync(19.9);
        Assert.False(await CompletesAsync(lateBeat, 50));
        await AdvanceToAsync(20.6);
        Assert.Equal((true, true), await lateBeat.WaitAsync(TimeSpan.FromSeconds(5)));

        // The next one a whole interval after the first, not sooner.
        earlyBeat = early.DrainAsync([]).AsTask();
        await AdvanceToAsync(29.9);
        Assert.False(await CompletesAsync(earlyBeat, 50));
        await AdvanceToAsync(31.2);
        Assert.Equal((true, true), await earlyBeat.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task PresenceIsRenewedWhileServed_AndExpiresOnceRemoved()
    {
        var subscriber = new Subscriber(1000, 2000);
        await _presence.ConnectAsync("s", new MemberIdentity("m", "m", null), "c1");
        var entry = _ticker.Add(subscriber, "s", "m", "c1");
        for (var i = 0; i < 120; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.Equal(1, (await _presence.ListAsync("s", 10, CancellationToken.None)).Total);

        _ticker.Remove(entry);
        _ticker.Remove(entry);
        Assert.Equal(0, _ticker.Count);
        for (var i = 0; i < 45; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.Equal(0, (await _presence.ListAsync("s", 10, CancellationToken.None)).Total);
    }

    [Fact]
    public async Task RemovingSomeWatches_KeepsServingTheOthers()
    {
        var subscribers = Enumerable.Range(0, 5).Select(_ => new Subscriber(1000, 2000)).ToList();
        var entries = subscribers.Select((s, i) => _ticker.Add(s, "s", "m" + i, "c" + i)).ToList();
        _ticker.Remove(entries[1]);
        _ticker.Remove(entries[4]);
        _ticker.Remove(entries[0]);
        Assert.Equal(2, _ticker.Count);
        var beats = subscribers.Select(s => s.DrainAsync([]).AsTask()).ToList();
        await AdvanceToAsync(16);
        await Task.WhenAll(beats[2], beats[3]).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(await CompletesAsync(Task.WhenAny(beats[0], beats[1], beats[4]), 50));
    }

    [Fact]
    public async Task CloseWatches_EndsEveryServedWatchWithTheReason_AndLeavesOthersAlone()
    {
        var served = new[] { new Subscriber(1000, 2000), new Subscriber(1000, 2000) };
        var removed = new Subscriber(1000, 2000);
        _ticker.Add(served[0], "s", "a", "c1");
        _ticker.Add(null, "s", "hub", "c2");
        _ticker.Remove(_ticker.Add(removed, "s", "c", "c3"));
        _ticker.Add(served[1], "t", "d", "c4");

        _ticker.CloseWatches("going away");

        foreach (var subscriber in served)
        {
            Assert.Equal("going away", subscriber.CloseReason);
            Assert.Equal((false, false), await subscriber.DrainAsync([]));
        }

        Assert.False(removed.IsClosed);
    }

    private async Task AdvanceToAsync(double seconds)
    {
        while ((_time.GetUtcNow() - _time.Start).TotalSeconds < seconds - 1e-9)
        {
            _time.Advance(TimeSpan.FromMilliseconds(100));
        }

        await Task.Yield();
    }

    private static async Task<bool> CompletesAsync(Task task, int milliseconds) =>
        await Task.WhenAny(task, Task.Delay(milliseconds)) == task;
}
