using System.Text.Json.Nodes;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>
/// TTL expiry proper, on a <see cref="InMemoryPresenceStore"/> driven directly (a connection that never says goodbye and never
/// renews, like one on a dead gateway node), writing into the gateway's session log.
/// </summary>
public sealed class ExpiryTests
{
    private const double Ttl = 30;

    private static InMemoryPresenceStore NewStore(ISessionStore log, FakeTimeProvider time, double grace = 5) =>
        new(log, Options.Create(new PresenceOptions { TtlSeconds = Ttl, LeaveGraceSeconds = grace }), time, NullLogger<InMemoryPresenceStore>.Instance);

    [Fact]
    public async Task Connect_NeverRenewed_ExpiresAfterTheTtlWithReasonExpired()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(ttl: Ttl), time);
        using var http = gateway.Client();
        using var presence = NewStore(gateway.Services.GetRequiredService<ISessionStore>(), time);
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");

        await presence.ConnectAsync(session, new MemberIdentity("ghost", "Ghost", null), "conn-1", new JsonObject { ["typing"] = true });
        await time.AdvanceAsync(TimeSpan.FromSeconds(Ttl - 1));
        var beforeTtl = await SyncAsync(http, session, observer);
        Assert.Equal(["presence.join"], beforeTtl.Where(e => e.MemberId == "ghost").Select(e => e.Name));
        Assert.Equal(1, (await presence.ListAsync(session, 10, default)).Total);

        // The sweeper runs every TTL/10: the expiry is noticed at most one sweep after the TTL.
        await time.AdvanceAsync(TimeSpan.FromSeconds(1 + (Ttl / 10)));
        var leave = await observer.WaitForAsync(e => e.Is("presence.leave", "ghost"), "the ghost's expiry");

        Assert.Equal("expired", Str(leave.Value!["reason"]));
        Assert.Equal("Ghost", Str(leave.Value["name"]));
        Assert.Null(leave.Value["state"]);
        Assert.Equal(0, (await presence.ListAsync(session, 10, default)).Total);
        Assert.Single(observer.PresenceEvents, e => e.Is("presence.leave", "ghost"));
    }

    [Fact]
    public async Task Connect_RenewedEveryThirdOfTheTtl_StaysPresent()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(ttl: Ttl), time);
        using var http = gateway.Client();
        using var presence = NewStore(gateway.Services.GetRequiredService<ISessionStore>(), time);
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");

        await presence.ConnectAsync(session, new MemberIdentity("alive", "Alive", null), "conn-1");
        for (var i = 0; i < 9; i++)
        {
            await time.AdvanceAsync(TimeSpan.FromSeconds(Ttl / 3), TimeSpan.FromSeconds(1));
            presence.Renew(session, "alive", "conn-1");
        }

        var seen = await SyncAsync(http, session, observer);

        Assert.Equal(["presence.join"], seen.Where(e => e.MemberId == "alive").Select(e => e.Name));
        var (members, total) = await presence.ListAsync(session, 10, default);
        Assert.Equal(1, total);
        Assert.Equal(1, members[0]["connections"]!.GetValue<int>());
    }

    [Fact]
    public async Task Connect_OneOfTwoConnectionsExpires_MemberStaysWithOneConnection()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(ttl: Ttl), time);
        using var http = gateway.Client();
        using var presence = NewStore(gateway.Services.GetRequiredService<ISessionStore>(), time);
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        var identity = new MemberIdentity("two", "Two tabs", null);

        await presence.ConnectAsync(session, identity, "dead-node");
        await presence.ConnectAsync(session, identity, "live-node");
        for (var i = 0; i < 6; i++)
        {
            await time.AdvanceAsync(TimeSpan.FromSeconds(Ttl / 3), TimeSpan.FromSeconds(1));
            presence.Renew(session, "two", "live-node");
        }

        var seen = await SyncAsync(http, session, observer);

        Assert.Equal(["presence.join"], seen.Where(e => e.MemberId == "two").Select(e => e.Name));
        var (members, _) = await presence.ListAsync(session, 10, default);
        Assert.Equal(1, Assert.Single(members)["connections"]!.GetValue<int>());
    }

    [Fact]
    public async Task Reconnect_WhileTheGraceLeaveIsBeingAppended_LogKeepsTheOrderAndEndsWithTheMemberPresent()
    {
        var time = NewClock();
        await using var gateway = new GatewayFactory(Settings(ttl: Ttl), time);
        using var http = gateway.Client();
        // A log whose appends take a while (as a remote log's do): here a leave waits for a gate.
        var log = new GatedSessionStore(gateway.Services.GetRequiredService<ISessionStore>(), "presence.leave");
        using var presence = NewStore(log, time, grace: 5);
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");
        var identity = new MemberIdentity("u1", "Ann", null);

        await presence.ConnectAsync(session, identity, "tab-1");
        await presence.DisconnectAsync(session, "u1", "tab-1");
        await time.AdvanceAsync(TimeSpan.FromSeconds(6)); // the grace sweep decides the leave; its append is slow
        var back = presence.ConnectAsync(session, identity, "tab-2"); // the member is back, with a new tab
        await Task.Delay(100);
        log.Release();
        await back.WaitAsync(TimeSpan.FromSeconds(10));
        await log.Drained;
        var seen = await SyncAsync(http, session, observer);

        Assert.Equal(1, (await presence.ListAsync(session, 10, default)).Total);
        // The log has the changes in the order they happened, so it ends with u1 present, as the store says.
        Assert.Equal(["presence.join", "presence.leave", "presence.join"], seen.Where(e => e.MemberId == "u1").Select(e => e.Name));
        using var late = await PresenceApi.WatchAsync(http, session, "late");
        var snapshot = await late.WaitForAsync(e => e.Name == "presence.snapshot", "the newcomer's presence snapshot");
        Assert.Contains(snapshot.Value!["members"]!.AsArray(), m => Str(m!["id"]) == "u1");
    }

    /// <summary>An <see cref="ISessionStore"/> that holds appends of one CUSTOM event name until released.</summary>
    private sealed class GatedSessionStore(ISessionStore inner, string heldName) : ISessionStore
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<Task> _held = [];

        public Task Drained
        {
            get
            {
                lock (_held)
                {
                    return Task.WhenAll(_held);
                }
            }
        }

        public void Release() => _gate.TrySetResult();

        public ValueTask<AppendResult> AppendAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey, CancellationToken cancellationToken, bool buffered = false)
        {
            if (!events.Any(e => e["name"]?.GetValue<string>() == heldName))
            {
                return inner.AppendAsync(sessionId, events, runId, idempotencyKey, cancellationToken);
            }

            var held = HoldAsync(sessionId, events, runId, idempotencyKey, cancellationToken);
            lock (_held)
            {
                _held.Add(held);
            }

            return new ValueTask<AppendResult>(held);
        }

        private async Task<AppendResult> HoldAsync(string sessionId, IReadOnlyList<JsonObject> events, string? runId, string? idempotencyKey, CancellationToken cancellationToken)
        {
            await _gate.Task;
            return await inner.AppendAsync(sessionId, events, runId, idempotencyKey, cancellationToken);
        }

        public ValueTask<SubscribeResult> SubscribeAsync(string sessionId, long? afterSeq, Subscriber subscriber, CancellationToken cancellationToken) =>
            inner.SubscribeAsync(sessionId, afterSeq, subscriber, cancellationToken);

        public void Unsubscribe(string sessionId, Subscriber subscriber) => inner.Unsubscribe(sessionId, subscriber);

        public IDisposable Retain(string sessionId) => inner.Retain(sessionId);

        public int Watchers(string sessionId) => inner.Watchers(sessionId);

        public ValueTask<IReadOnlyList<JsonObject>> MessagesAsync(string sessionId, CancellationToken cancellationToken) => inner.MessagesAsync(sessionId, cancellationToken);

        public ValueTask<JsonNode?> StateAsync(string sessionId, CancellationToken cancellationToken) => inner.StateAsync(sessionId, cancellationToken);

        public ValueTask<bool> HasMessageAsync(string sessionId, string messageId, CancellationToken cancellationToken) => inner.HasMessageAsync(sessionId, messageId, cancellationToken);

        public ValueTask<SessionInfo> InfoAsync(string sessionId, CancellationToken cancellationToken) => inner.InfoAsync(sessionId, cancellationToken);
    }
}
