using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using AiStream.Gateway.Presence;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>What a newcomer learns about who is here: the catch-up's presence.snapshot, the cap, and GET presence.</summary>
public sealed class PresenceSnapshotTests
{
    [Fact]
    public async Task LateJoiner_MembersPresent_CatchUpListsThemWithStateRightAfterStateSnapshot()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann", "#3366ff");
        await SetStateAsync(http, session, "u1", new JsonObject { ["viewing"] = "msg-12" });
        await using var bob = await SessionHubClient.ConnectAsync(http.BaseAddress!, "u2", "Bob");
        await bob.Connection.InvokeAsync<JsonObject>("Join", session, null);
        await bob.Connection.InvokeAsync("SetState", session, new JsonObject { ["typing"] = true });
        using var dee = await PresenceApi.WatchAsync(http, session, "u9", "Dee");
        await SyncAsync(http, session, ann);

        using var late = await PresenceApi.WatchAsync(http, session, "u3", "Cy");
        var ownJoin = await late.WaitForAsync(e => e.Is("presence.join", "u3"), "the newcomer's own join");

        var catchUp = late.Events.TakeWhile(e => e != ownJoin).ToList();
        Assert.Equal(["MESSAGES_SNAPSHOT", "STATE_SNAPSHOT", "CUSTOM"], catchUp.Select(e => e.Type));
        var snapshot = catchUp[2];
        Assert.Equal("presence.snapshot", snapshot.Name);
        // The snapshot is taken as the newcomer subscribes, before it is made present: it lists the others only.
        Assert.Equal(3, snapshot.Value!["total"]!.GetValue<int>());
        var members = snapshot.Value["members"]!.AsArray().Select(m => (JsonObject)m!).ToDictionary(m => Str(m["id"]));
        Assert.Equal(["u1", "u2", "u9"], members.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("Ann", Str(members["u1"]["name"]));
        Assert.Equal("user", Str(members["u1"]["kind"]));
        Assert.Equal("#3366ff", Str(members["u1"]["color"]));
        Assert.Equal("msg-12", Str(members["u1"]["state"]!["viewing"]));
        Assert.Equal(1, members["u1"]["connections"]!.GetValue<int>());
        Assert.Equal("Bob", Str(members["u2"]["name"]));
        Assert.True(members["u2"]["state"]!["typing"]!.GetValue<bool>());
        Assert.Null(members["u2"]["color"]);
        Assert.Equal(snapshot.Seq, ownJoin.Seq - 1);
        Assert.Equal(4, (await GetPresenceAsync(http, session))["total"]!.GetValue<int>());
    }

    [Fact]
    public async Task LateJoiner_AfterSomeoneLeft_CatchUpLeavesThemOut()
    {
        await using var gateway = new GatewayFactory(Settings(grace: 0));
        using var http = gateway.Client();
        var session = NewSessionId();
        using var ann = await PresenceApi.WatchAsync(http, session, "u1", "Ann");
        var gone = await PresenceApi.WatchAsync(http, session, "u9", "Gone");
        gone.Dispose();
        await ann.WaitForAsync(e => e.Is("presence.leave", "u9"), "u9's leave (no grace)");

        using var late = await PresenceApi.WatchAsync(http, session, "u3");
        var snapshot = await late.WaitForAsync(e => e.Name == "presence.snapshot", "the presence snapshot");

        Assert.Equal(1, snapshot.Value!["total"]!.GetValue<int>());
        Assert.Equal(["u1"], snapshot.Value["members"]!.AsArray().Select(m => Str(m!["id"])));
    }

    [Fact]
    public async Task LateJoiner_MoreMembersThanTheCap_ListIsCappedAndTotalExact()
    {
        await using var gateway = new GatewayFactory(Settings(snapshotCap: 2));
        using var http = gateway.Client();
        var session = NewSessionId();
        var present = new List<SessionWatcher>();
        for (var i = 1; i <= 5; i++)
        {
            present.Add(await PresenceApi.WatchAsync(http, session, "m" + i.ToString(CultureInfo.InvariantCulture)));
        }

        try
        {
            using var late = await PresenceApi.WatchAsync(http, session, "late");
            var snapshot = await late.WaitForAsync(e => e.Name == "presence.snapshot", "the presence snapshot");

            Assert.Equal(5, snapshot.Value!["total"]!.GetValue<int>());
            var listed = snapshot.Value["members"]!.AsArray().Select(m => Str(m!["id"])).ToList();
            Assert.Equal(2, listed.Count);
            Assert.Equal(2, listed.Distinct().Count());
            Assert.All(listed, id => Assert.Matches("^m[1-5]$", id));
            // GET presence is not capped by the snapshot cap.
            var all = await GetPresenceAsync(http, session);
            Assert.Equal(6, all["total"]!.GetValue<int>());
            Assert.Equal(6, Members(all).Count);
        }
        finally
        {
            present.ForEach(p => p.Dispose());
        }
    }

    [Fact]
    public async Task LargeSession_TenThousandMembers_GetIsLimitedAndSnapshotCappedWithExactTotals_AndJoinsAreCounted()
    {
        // Fake time that never moves: nobody's TTL runs out while the test renews nothing.
        var time = NewClock();
        var settings = Settings();
        settings["AiStream:Presence:MaxMembers"] = "10001";
        await using var gateway = new GatewayFactory(settings, time);
        using var http = gateway.Client();
        var presence = gateway.Services.GetRequiredService<IPresenceStore>();
        var session = NewSessionId();
        var clock = Stopwatch.StartNew();

        for (var i = 0; i < 10_000; i++)
        {
            var id = "m" + i.ToString("D5", CultureInfo.InvariantCulture);
            await presence.ConnectAsync(session, new MemberIdentity(id, id, null), "c-" + id);
        }

        // Past CoalesceAbove (100) joins are counted, not announced: the first count came with the 101st member, the
        // next is due CountIntervalMilliseconds (1 s) later.
        var watcher = await PresenceApi.WatchAsync(http, session, "m00000");
        time.Advance(TimeSpan.FromSeconds(1));
        await watcher.WaitForAsync(e => e.Name == "presence.count" && e.Value!["members"]!.GetValue<int>() == 10_000, "the count of 10,000");
        watcher.Dispose();
        var page = await GetPresenceAsync(http, session, limit: 50);
        using var late = await PresenceApi.WatchAsync(http, session, "late", "Late");
        var snapshot = await late.WaitForAsync(e => e.Name == "presence.snapshot", "the presence snapshot");
        // The newcomer's join is in the next count.
        time.Advance(TimeSpan.FromSeconds(1));
        var ownJoin = await late.WaitForAsync(e => e.Name == "presence.count" && e.Value!["members"]!.GetValue<int>() == 10_001, "the count with the newcomer");
        var afterJoin = await GetPresenceAsync(http, session, limit: 1);
        clock.Stop();

        Assert.Equal(10_000, page["total"]!.GetValue<int>());
        // Listed by id, in ordinal order.
        Assert.Equal(Enumerable.Range(0, 50).Select(i => "m" + i.ToString("D5", CultureInfo.InvariantCulture)), Members(page).Select(m => Str(m["id"])));
        // The snapshot is taken before the newcomer is made present. The session is crowded (past CoalesceAbove), so
        // the log knows the total but not who: the snapshot says so, and GET presence lists them.
        Assert.Equal(10_000, snapshot.Value!["total"]!.GetValue<int>());
        Assert.Empty(snapshot.Value["members"]!.AsArray());
        Assert.True(snapshot.Value["counted"]!.GetValue<bool>());
        Assert.Equal(snapshot.Seq + 1, ownJoin.Seq);
        Assert.Equal(1, ownJoin.Value!["joined"]!.GetValue<int>());
        Assert.DoesNotContain(late.Events, e => e.Is("presence.join", "late"));
        Assert.Equal(10_001, afterJoin["total"]!.GetValue<int>());
        Assert.Single(Members(afterJoin));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed.TotalSeconds:F1} s");
    }
}
