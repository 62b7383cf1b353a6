using System.Net.Sockets;
using System.Text;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>Connections of a member over SSE: tabs, closing, reloading, crashing; with fake time for grace and TTL.</summary>
public sealed class ConnectionLifecycleTests
{
    [Fact]
    public async Task CloseTabs_TwoOfThreeClosed_NoLeaveAndTheLastCloseLeavesOnlyAfterTheGrace()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(grace: 5), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs", "Observer");
        var tabs = new List<SessionWatcher>();
        for (var i = 0; i < 3; i++)
        {
            tabs.Add(await PresenceApi.WatchAsync(http, session, "u1", "Ann", "#ff0000"));
        }

        Assert.Equal(3, await ConnectionsAsync(http, session, "u1"));
        tabs[0].Dispose();
        tabs[1].Dispose();
        await WaitForConnectionsAsync(http, session, "u1", 1);
        var afterTwo = await SyncAsync(http, session, observer);

        // One member with three connections: one join (when the first tab opened), nothing when tabs close.
        var join = Assert.Single(afterTwo, e => e.MemberId == "u1");
        Assert.Equal("presence.join", join.Name);
        Assert.Equal("Ann", Str(join.Value!["name"]));
        Assert.Equal("user", Str(join.Value["kind"]));
        Assert.Equal("#ff0000", Str(join.Value["color"]));
        Assert.Equal(1, join.Value["connections"]!.GetValue<int>());
        var listed = Member(await GetPresenceAsync(http, session), "u1")!;
        Assert.Equal(1, listed["connections"]!.GetValue<int>());

        tabs[2].Dispose();
        await WaitForConnectionsAsync(http, session, "u1", 0);
        await time.AdvanceAsync(TimeSpan.FromSeconds(4.5));
        var beforeGrace = await SyncAsync(http, session, observer);
        Assert.DoesNotContain(beforeGrace, e => e.Is("presence.leave", "u1"));
        Assert.NotNull(Member(await GetPresenceAsync(http, session), "u1")); // still present, leaving

        await time.AdvanceAsync(TimeSpan.FromSeconds(1));
        var leave = await observer.WaitForAsync(e => e.Is("presence.leave", "u1"), "u1's leave");

        Assert.Equal("left", Str(leave.Value!["reason"]));
        Assert.Equal(0, leave.Value["connections"]!.GetValue<int>());
        Assert.Null(leave.Value["state"]);
        Assert.True(leave.Seq > beforeGrace.Max(e => e.Seq));
        Assert.Equal(["presence.join", "presence.leave"], observer.PresenceEvents.Where(e => e.MemberId == "u1").Select(e => e.Name));
        var after = await GetPresenceAsync(http, session);
        Assert.Equal(["obs"], Members(after).Select(m => Str(m["id"])));
        Assert.Equal(1, after["total"]!.GetValue<int>());
    }

    [Fact]
    public async Task Reload_InsideTheGrace_NoLeaveJoinPair()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(grace: 5), time);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        var tab = await PresenceApi.WatchAsync(http, session, "u1", "Ann");
        await observer.WaitForAsync(e => e.Is("presence.join", "u1"), "u1's join");

        tab.Dispose();
        await WaitForConnectionsAsync(http, session, "u1", 0);
        await time.AdvanceAsync(TimeSpan.FromSeconds(3));
        using var reloaded = await PresenceApi.WatchAsync(http, session, "u1", "Ann");
        await time.AdvanceAsync(TimeSpan.FromSeconds(10));
        var seen = await SyncAsync(http, session, observer);

        Assert.Equal(["presence.join"], seen.Where(e => e.MemberId == "u1").Select(e => e.Name));
        Assert.Equal(1, await ConnectionsAsync(http, session, "u1"));
        // The reloaded tab got the catch-up with itself already present, and nothing about itself after it.
        var snapshot = await reloaded.WaitForAsync(e => e.Name == "presence.snapshot", "the reloaded tab's presence snapshot");
        Assert.Contains(snapshot.Value!["members"]!.AsArray(), m => Str(m!["id"]) == "u1");
        Assert.DoesNotContain(reloaded.PresenceEvents, e => e.MemberId == "u1");
    }

    [Fact]
    public async Task AbortedSocket_NoClose_LeavesWithinTheTtl()
    {
        var time = NewClock();
        const int ttl = 30;
        await using var gateway = new GatewayFactory(Settings(grace: 5, ttl: ttl), time);
        using var http = gateway.Client();
        var baseAddress = gateway.Start();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");

        // A raw HTTP/1.1 watch, reset (RST, no FIN) once the stream started: a killed browser or a dropped network.
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(baseAddress.Host, baseAddress.Port);
            var request = $"GET /{SessionWatcher.Url(session, "crash", "Crash")} HTTP/1.1\r\nHost: {baseAddress.Authority}\r\nAccept: text/event-stream\r\n\r\n";
            await socket.SendAsync(Encoding.ASCII.GetBytes(request));
            var received = new StringBuilder();
            var buffer = new byte[4096];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (!received.ToString().Contains("retry:", StringComparison.Ordinal))
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                Assert.True(n > 0, "the gateway closed the raw watch: " + received);
                received.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }

            Assert.StartsWith("HTTP/1.1 200", received.ToString(), StringComparison.Ordinal);
            await observer.WaitForAsync(e => e.Is("presence.join", "crash"), "the crashing client's join");
            socket.LingerState = new LingerOption(true, 0);
            socket.Close();
        }

        var elapsed = TimeSpan.Zero;
        while (!observer.PresenceEvents.Any(e => e.Is("presence.leave", "crash")) && elapsed < TimeSpan.FromSeconds(ttl))
        {
            await time.AdvanceAsync(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
            await Task.Delay(40);
            elapsed += TimeSpan.FromSeconds(1);
        }

        var leave = await observer.WaitForAsync(e => e.Is("presence.leave", "crash"), $"the crashed client's leave within the TTL ({ttl} s)", TimeSpan.FromSeconds(1));
        Assert.Contains(Str(leave.Value!["reason"]), new[] { "left", "expired" });
        Assert.True(elapsed <= TimeSpan.FromSeconds(ttl), $"left after {elapsed.TotalSeconds} s of fake time");
        Assert.Null(Member(await GetPresenceAsync(http, session), "crash"));
        Assert.NotNull(Member(await GetPresenceAsync(http, session), "obs")); // renewed while connected: no ghost, no false expiry
    }
}
