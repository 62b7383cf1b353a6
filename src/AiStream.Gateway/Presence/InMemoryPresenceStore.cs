using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Presence;

/// <summary>
/// Who is in each session. A member is an identity with any number of connections: the first connection makes it
/// join, closing the last one makes it leave after a grace period (so a reload is silent), and a connection that is
/// not renewed within the TTL expires. Join, leave and update are appended to the session log as CUSTOM events
/// <c>presence.join</c>, <c>presence.leave</c> and <c>presence.update</c>, so every transport carries them in order.
/// </summary>
internal sealed partial class InMemoryPresenceStore : IPresenceStore, IDisposable
{
    private readonly ConcurrentDictionary<string, SessionMembers> _sessions = new(StringComparer.Ordinal);
    private readonly ISessionStore _log;
    private readonly PresenceOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<InMemoryPresenceStore> _logger;
    private readonly ITimer _sweeper;

    public InMemoryPresenceStore(ISessionStore log, IOptions<PresenceOptions> options, TimeProvider time, ILogger<InMemoryPresenceStore> logger)
    {
        _log = log;
        _options = options.Value;
        _time = time;
        _logger = logger;
        var every = TimeSpan.FromSeconds(Math.Max(0.5, _options.TtlSeconds / 10));
        _sweeper = time.CreateTimer(_ => _ = SweepAsync(), null, every, every);
    }

    /// <summary>How often a transport should renew a live connection.</summary>
    public TimeSpan RenewInterval => TimeSpan.FromSeconds(_options.TtlSeconds / 3);

    /// <summary>Registers a connection of a member; the member joins if it was not present (or leaving).</summary>
    public async Task ConnectAsync(string sessionId, MemberIdentity identity, string connectionId, JsonObject? state = null)
    {
        var session = await EnterAsync(sessionId, create: true).ConfigureAwait(false);
        try
        {
            JsonObject? joined = null;
            lock (session!)
            {
                if (!session.Members.TryGetValue(identity.Id, out var member))
                {
                    member = new Member(identity) { State = state ?? new JsonObject() };
                    session.Members[identity.Id] = member;
                }

                member.Identity = identity;
                member.LeaveAt = null; // back within the grace period: no leave, no join
                member.Connections[connectionId] = _time.GetUtcNow() + TimeSpan.FromSeconds(_options.TtlSeconds);
                if (!member.Announced)
                {
                    member.Announced = true;
                    joined = Describe(member);
                }
            }

            if (joined is not null)
            {
                await AppendAsync(sessionId, "presence.join", joined).ConfigureAwait(false);
            }
        }
        finally
        {
            session!.Gate.Release();
        }
    }

    /// <summary>Keeps a connection alive for another TTL.</summary>
    public void Renew(string sessionId, string memberId, string connectionId)
    {
        if (_sessions.TryGetValue(sessionId, out var session))
        {
            lock (session)
            {
                if (session.Members.TryGetValue(memberId, out var member) && member.Connections.ContainsKey(connectionId))
                {
                    member.Connections[connectionId] = _time.GetUtcNow() + TimeSpan.FromSeconds(_options.TtlSeconds);
                }
            }
        }
    }

    /// <summary>Removes a connection; the member leaves after the grace period if it was the last (at once when <paramref name="immediate"/>).</summary>
    public async Task DisconnectAsync(string sessionId, string memberId, string connectionId, bool immediate = false)
    {
        var session = await EnterAsync(sessionId, create: false).ConfigureAwait(false);
        if (session is null)
        {
            return;
        }

        try
        {
            JsonObject? left = null;
            lock (session)
            {
                if (!session.Members.TryGetValue(memberId, out var member) || !member.Connections.Remove(connectionId) || member.Connections.Count > 0)
                {
                    return;
                }

                if (immediate || _options.LeaveGraceSeconds <= 0)
                {
                    left = Leave(session, member, "left");
                }
                else
                {
                    member.LeaveAt = _time.GetUtcNow() + TimeSpan.FromSeconds(_options.LeaveGraceSeconds);
                    session.ScheduleCheck(_time, member.LeaveAt.Value - _time.GetUtcNow(), () => _ = SweepAsync());
                }
            }

            if (left is not null)
            {
                await AppendAsync(sessionId, "presence.leave", left).ConfigureAwait(false);
            }
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>Replaces a present member's state; bursts are coalesced so only the latest state of a window is logged.</summary>
    public async Task<PresenceUpdate> SetStateAsync(string sessionId, string memberId, JsonObject state)
    {
        if (JsonSerializer.SerializeToUtf8Bytes(state, SessionsJsonContext.Default.JsonObject).Length > _options.MaxStateBytes)
        {
            return PresenceUpdate.TooLarge;
        }

        var session = await EnterAsync(sessionId, create: false).ConfigureAwait(false);
        if (session is null)
        {
            return PresenceUpdate.NotPresent;
        }

        try
        {
            JsonObject? update = null;
            lock (session)
            {
                if (!session.Members.TryGetValue(memberId, out var member) || member.Connections.Count == 0)
                {
                    return PresenceUpdate.NotPresent;
                }

                member.State = state;
                var now = _time.GetUtcNow();
                var window = TimeSpan.FromMilliseconds(_options.UpdateCoalesceMilliseconds);
                if (member.LastUpdateAt is { } last && now - last < window)
                {
                    // Inside the window: remember it and log the latest once the window closes.
                    if (!member.UpdatePending)
                    {
                        member.UpdatePending = true;
                        session.ScheduleCheck(_time, last + window - now, () => _ = SweepAsync());
                    }
                }
                else
                {
                    member.LastUpdateAt = now;
                    member.UpdatePending = false; // this update carries the latest state already
                    update = Describe(member);
                }
            }

            if (update is not null)
            {
                await AppendAsync(sessionId, "presence.update", update).ConfigureAwait(false);
            }

            return PresenceUpdate.Applied;
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>The members present now, with connection counts and state.</summary>
    public ValueTask<(IReadOnlyList<JsonObject> Members, int Total)> ListAsync(string sessionId, int limit, CancellationToken cancellationToken) =>
        ValueTask.FromResult(List(sessionId, limit));

    private (IReadOnlyList<JsonObject> Members, int Total) List(string sessionId, int limit)
    {
        if (!_sessions.TryGetValue(sessionId, out var session))
        {
            return ([], 0);
        }

        lock (session)
        {
            var present = session.Members.Values.Where(m => m.Connections.Count > 0 || m.LeaveAt is not null).ToList();
            return (present.OrderBy(m => m.Identity.Id, StringComparer.Ordinal).Take(limit).Select(Describe).ToList(), present.Count);
        }
    }

    /// <summary>
    /// Expires connections past their TTL, completes leaves past their grace and flushes coalesced updates. Each
    /// session's changes and their events go through its gate, so the log always has them in the order they happened.
    /// </summary>
    internal async Task SweepAsync()
    {
        var window = TimeSpan.FromMilliseconds(_options.UpdateCoalesceMilliseconds);
        foreach (var (sessionId, session) in _sessions)
        {
            await session.Gate.WaitAsync().ConfigureAwait(false);
            try
            {
                var now = _time.GetUtcNow();
                var events = new List<(string Name, JsonObject Value)>();
                lock (session)
                {
                    foreach (var member in session.Members.Values.ToList())
                    {
                        var expired = member.Connections.Where(c => c.Value <= now).Select(c => c.Key).ToList();
                        foreach (var connection in expired)
                        {
                            member.Connections.Remove(connection);
                        }

                        if (expired.Count > 0 && member.Connections.Count == 0)
                        {
                            Log.Expired(_logger, sessionId, member.Identity.Id);
                            events.Add(("presence.leave", Leave(session, member, "expired")));
                            continue;
                        }

                        if (member.LeaveAt is { } leaveAt && leaveAt <= now && member.Connections.Count == 0)
                        {
                            events.Add(("presence.leave", Leave(session, member, "left")));
                            continue;
                        }

                        if (member.UpdatePending && member.LastUpdateAt is { } last && now - last >= window)
                        {
                            member.UpdatePending = false;
                            member.LastUpdateAt = now;
                            events.Add(("presence.update", Describe(member)));
                        }
                    }

                }

                foreach (var (name, value) in events)
                {
                    await AppendAsync(sessionId, name, value).ConfigureAwait(false);
                }

                // Forget an empty session only after its leaves are logged: a connect waiting on this gate then sees
                // Removed, starts afresh, and its join lands after the leave.
                lock (session)
                {
                    if (session.Members.Count == 0 && _sessions.TryRemove(new KeyValuePair<string, SessionMembers>(sessionId, session)))
                    {
                        session.Removed = true;
                    }
                }
            }
            finally
            {
                session.Gate.Release();
            }
        }
    }

    /// <summary>Enters a session's gate; a session forgotten meanwhile is looked up (or created) again.</summary>
    private async Task<SessionMembers?> EnterAsync(string sessionId, bool create)
    {
        while (true)
        {
            SessionMembers? session;
            if (create)
            {
                session = _sessions.GetOrAdd(sessionId, _ => new SessionMembers());
            }
            else if (!_sessions.TryGetValue(sessionId, out session))
            {
                return null;
            }

            await session.Gate.WaitAsync().ConfigureAwait(false);
            if (!session.Removed)
            {
                return session;
            }

            session.Gate.Release();
        }
    }

    private static JsonObject Leave(SessionMembers session, Member member, string reason)
    {
        session.Members.Remove(member.Identity.Id);
        var described = Describe(member);
        described["reason"] = reason;
        described.Remove("state");
        return described;
    }

    private static JsonObject Describe(Member member)
    {
        var value = new JsonObject
        {
            ["id"] = member.Identity.Id,
            ["name"] = member.Identity.Name,
            ["kind"] = member.Identity.Kind,
            ["connections"] = member.Connections.Count,
            ["state"] = member.State.DeepClone(),
        };
        if (member.Identity.Color is { } color)
        {
            value["color"] = color;
        }

        return value;
    }

    private async Task AppendAsync(string sessionId, string name, JsonObject value)
    {
        try
        {
            await _log.AppendAsync(sessionId, [AgUi.Event(AgUi.Custom, ("name", name), ("value", value))], null, null, CancellationToken.None, buffered: true).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.AppendFailed(_logger, sessionId, name, ex);
        }
    }

    public void Dispose()
    {
        _sweeper.Dispose();
        foreach (var session in _sessions.Values)
        {
            session.Dispose();
        }
    }

    private sealed class Member(MemberIdentity identity)
    {
        public MemberIdentity Identity { get; set; } = identity;
        public JsonObject State { get; set; } = new();
        public Dictionary<string, DateTimeOffset> Connections { get; } = new(StringComparer.Ordinal);
        public DateTimeOffset? LeaveAt { get; set; }
        public DateTimeOffset? LastUpdateAt { get; set; }
        public bool UpdatePending { get; set; }
        public bool Announced { get; set; }
    }

    private sealed class SessionMembers : IDisposable
    {
        private readonly List<ITimer> _timers = [];

        public Dictionary<string, Member> Members { get; } = new(StringComparer.Ordinal);

        /// <summary>Serialises this session's presence changes with the events that report them.</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);

        /// <summary>Set when the sweep forgot this session; late callers look it up again.</summary>
        public bool Removed { get; set; }

        /// <summary>A one-shot sweep when a grace period or coalescing window ends, so leaves are not late by a sweep interval.</summary>
        public void ScheduleCheck(TimeProvider time, TimeSpan due, Action check)
        {
            var holder = new ITimer?[1];
            var timer = time.CreateTimer(_ =>
            {
                check();
                lock (this)
                {
                    if (holder[0] is { } fired)
                    {
                        _timers.Remove(fired);
                        fired.Dispose();
                    }
                }
            }, null, due < TimeSpan.Zero ? TimeSpan.Zero : due, Timeout.InfiniteTimeSpan);
            holder[0] = timer;
            _timers.Add(timer);
        }

        public void Dispose()
        {
            lock (this)
            {
                foreach (var timer in _timers)
                {
                    timer.Dispose();
                }

                _timers.Clear();
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Member {MemberId} of session {SessionId} expired: no connection renewed within the TTL")]
        public static partial void Expired(ILogger logger, string sessionId, string memberId);

        [LoggerMessage(EventId = 6002, Level = LogLevel.Warning, Message = "Could not log {Event} in session {SessionId}")]
        public static partial void AppendFailed(ILogger logger, string sessionId, string @event, Exception exception);
    }
}
