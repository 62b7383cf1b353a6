using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>
/// Big sessions: at most <c>Presence:MaxMembers</c> members, and past <c>Presence:CoalesceAbove</c> the joins, leaves
/// and state updates are counted into periodic <c>presence.count</c> events instead of one event (and one delivery to
/// every watcher) each. In memory and with a real Redis.
/// </summary>
public sealed class CrowdTests
{
    public static TheoryData<bool> Stores => new() { false, true };

    /// <summary>An in-process gateway, or with <paramref name="redis"/> a gateway process on a real Redis.</summary>
    private static async Task<Node> StartAsync(bool redis, Dictionary<string, string?> extra)
    {
        if (!redis)
        {
            var settings = Settings(grace: 0);
            foreach (var (key, value) in extra)
            {
                settings[key] = value;
            }

            var gateway = new GatewayFactory(settings);
            return new Node(gateway.Client(), gateway, null, gateway.Services.GetRequiredService<IMeterFactory>());
        }

        var server = await RedisServer.StartAsync();
        var process = await Scaleout.ScaleoutKit.StartNodeAsync(server.ConnectionString, "A", extra);
        return new Node(Scaleout.ScaleoutKit.Client(process), process, server, null);
    }

    private sealed record Node(HttpClient Http, IAsyncDisposable Gateway, RedisServer? Redis, IMeterFactory? Meters) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await Gateway.DisposeAsync();
            if (Redis is not null)
            {
                await Redis.DisposeAsync();
            }
        }
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task MaxMembers_OneMoreMemberIsRefusedWith429OverSseAndTheHub_AnotherTabOfAMemberIsNot(bool redis)
    {
        await using var node = await StartAsync(redis, new() { ["AiStream:Presence:MaxMembers"] = "3" });
        var http = node.Http;
        using var refused = node.Meters is { } meters ? new MetricCollector<long>(meters, "AiStream", "aistream.limits.refused") : null;
        var session = NewSessionId();
        using var u1 = await PresenceApi.WatchAsync(http, session, "u1");
        using var u2 = await PresenceApi.WatchAsync(http, session, "u2");
        var u3 = await PresenceApi.WatchAsync(http, session, "u3");

        using (var fourth = await http.GetAsync(SessionWatcher.Url(session, "u4"), HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, fourth.StatusCode);
            Assert.Equal("application/problem+json", fourth.Content.Headers.ContentType?.MediaType);
            Assert.Contains("too_many_members", await fourth.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.NotNull(fourth.Headers.RetryAfter);
        }

        await using (var hub = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u5", "Eve"))
        {
            var error = await Assert.ThrowsAsync<HubException>(() => hub.Connection.InvokeAsync<JsonObject>("Join", session, null));
            Assert.Contains("MaxMembers", error.Message, StringComparison.Ordinal);
        }

        // A second tab of a present member is the same member.
        using (var secondTab = await PresenceApi.WatchAsync(http, session, "u1"))
        {
            await WaitForConnectionsAsync(http, session, "u1", 2);
        }

        Assert.Equal(3, (await GetPresenceAsync(http, session))["total"]!.GetValue<int>());
        Assert.Equal(refused is null ? 0 : 2, refused?.GetMeasurementSnapshot().Count(m => (string?)m.Tags["aistream.limit"] == "members_per_session") ?? 0);

        // Once one leaves there is room again.
        u3.Dispose();
        await WaitForConnectionsAsync(http, session, "u3", null);
        using var u4 = await PresenceApi.WatchAsync(http, session, "u4");
        await u1.WaitForAsync(e => e.Is("presence.join", "u4"), "u4's join");
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task PastCoalesceAbove_JoinsLeavesAndUpdatesAreCountedIntoPeriodicCounts_AndIndividualEventsResumeBelowIt(bool redis)
    {
        await using var node = await StartAsync(redis, new()
        {
            ["AiStream:Presence:CoalesceAbove"] = "2",
            ["AiStream:Presence:CountIntervalMilliseconds"] = "400",
            ["AiStream:Presence:UpdateCoalesceMilliseconds"] = "0",
        });
        var http = node.Http;
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        var u2 = await PresenceApi.WatchAsync(http, session, "u2");
        var crowd = new List<SessionWatcher>();
        for (var i = 3; i <= 7; i++)
        {
            crowd.Add(await PresenceApi.WatchAsync(http, session, "u" + i));
        }

        // Members 3 to 7 joined a crowded session: counted, not announced one by one.
        await observer.WaitForAsync(e => Count(e) is { } c && c["members"]!.GetValue<int>() == 7, "a count of 7 members");
        for (var round = 0; round < 20; round++)
        {
            await SetStateAsync(http, session, "u5", new JsonObject { ["cursor"] = round });
        }

        foreach (var watch in crowd)
        {
            watch.Dispose();
        }

        // Back at the threshold (2 members) the session is still crowded: a crowd ends only at half of it, so one client
        // joining and leaving at the threshold cannot turn every change into a snapshot.
        await observer.WaitForAsync(e => Count(e) is { } c && c["members"]!.GetValue<int>() == 2, "a count of 2 members");
        u2.Dispose();

        // The leave that ends the crowd logs the count at once, then everyone present, announced one by one from there.
        var resync = await observer.WaitForAsync(e => e.Name == "presence.snapshot" && e.Seq > 0 && e.Value!["counted"] is null && e.Value["total"]!.GetValue<int>() == 1, "the snapshot that ends the crowd");
        Assert.Equal(["obs"], resync.Value!["members"]!.AsArray().Select(m => Str(m!["id"])));
        using (var u8 = await PresenceApi.WatchAsync(http, session, "u8"))
        {
            await observer.WaitForAsync(e => e.Is("presence.join", "u8"), "u8's join, announced again");
        }

        await observer.WaitForAsync(e => e.Is("presence.leave", "u8"), "u8's leave");
        var seen = observer.Events;

        var announced = seen.Where(e => e.MemberId is not null).Select(e => $"{e.Name} {e.MemberId}").ToList();
        Assert.Equal(["presence.join obs", "presence.join u2", "presence.join u8", "presence.leave u8"], announced);
        var counts = seen.Select(Count).OfType<JsonObject>().ToList();
        Assert.Equal(5, counts.Sum(c => c["joined"]!.GetValue<int>()));
        Assert.Equal(6, counts.Sum(c => c["left"]!.GetValue<int>()));
        Assert.Equal(20, counts.Sum(c => c["updated"]!.GetValue<int>()));
        Assert.Equal(1, counts[^1]["members"]!.GetValue<int>());
        // 31 changes, at most one count per interval (the first at once, the rest folded), and the one ending the crowd.
        Assert.InRange(counts.Count, 2, 12);
        var times = seen.Where(e => Count(e) is not null).Select(e => e.Data["timestamp"]!.GetValue<long>()).SkipLast(1).ToList();
        Assert.All(times.Zip(times.Skip(1)), pair => Assert.True(pair.Second - pair.First >= 400, $"counts {pair.First} and {pair.Second} closer than the interval"));
    }

    [Theory]
    [MemberData(nameof(Stores))]
    public async Task OneClientJoiningAndLeavingAtTheThreshold_CostsCountsNotSnapshots(bool redis)
    {
        await using var node = await StartAsync(redis, new()
        {
            ["AiStream:Presence:CoalesceAbove"] = "3",
            ["AiStream:Presence:CountIntervalMilliseconds"] = "300",
        });
        var http = node.Http;
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        using var u2 = await PresenceApi.WatchAsync(http, session, "u2");
        using var u3 = await PresenceApi.WatchAsync(http, session, "u3");
        for (var i = 0; i < 10; i++)
        {
            using var toggler = await PresenceApi.WatchAsync(http, session, "t");
            await WaitForConnectionsAsync(http, session, "t", 1);
        }

        await WaitForConnectionsAsync(http, session, "t", null);
        var marker = await MarkAsync(http, session);
        await observer.WaitForMarkerAsync(marker);

        // The first join past the threshold started a crowd; it never got back to half of it, so no snapshot was logged.
        Assert.DoesNotContain(observer.Events, e => e.Name == "presence.snapshot" && e.Seq > 0);
        Assert.DoesNotContain(observer.Events, e => e.MemberId == "t");
    }

    private static JsonObject? Count(WatchedEvent e) => e.Name == "presence.count" ? e.Value : null;
}
