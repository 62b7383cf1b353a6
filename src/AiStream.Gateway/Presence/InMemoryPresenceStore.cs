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
/// A session is bounded to <see cref="PresenceOptions.MaxMembers"/>; past <see cref="PresenceOptions.CoalesceAbove"/>
/// members its changes are counted into periodic <c>presence.count</c> events instead.
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
            (string Name, JsonObject Value)? joined = null;
            var now = _time.GetUtcNow();
            lock (session!)
            {
                if (!session.Members.TryGetValue(identity.Id, out var member))
                {
                    if (session.Members.Count >= _options.MaxMembers)
                    {
                        throw new MemberLimitExceededException(
                            $"Session '{sessionId}' has its maximum of {_options.MaxMembers} members (AiStream:Presence:MaxMembers); try again later.");
                    }

                    member = new Member(identity) { State = state ?? new JsonObject() };
                    session.Members[identity.Id] = member;
                }

                member.Identity = identity;
                member.LeaveAt = null; // back within the grace period: no leave, no join
                member.Connections[connectionId] = now + TimeSpan.FromSeconds(_options.TtlSeconds);
                if (!member.Announced)
                {
                    member.Announced = true;
                    if (session.Crowded || session.Members.Count > _options.CoalesceAbove)
                    {
                        session.Crowded = true;
                        session.Joined++;
                        joined = Tally(session, now);
                    }
                    else
                    {
                        joined = ("presence.join", Describe(member));
                    }
                }
            }

            if (joined is { } logged)
            {
                await AppendAsync(sessionId, logged.Name, logged.Value, now).ConfigureAwait(false);
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
            var left = new List<(string Name, JsonObject Value)>();
            var now = _time.GetUtcNow();
            lock (session)
            {
                if (!session.Members.TryGetValue(memberId, out var member) || !member.Connections.Remove(connectionId) || member.Connections.Count > 0)
                {
                    return;
                }

                if (immediate || _options.LeaveGraceSeconds <= 0)
                {
                    Depart(session, member, "left", now, left);
                }
                else
                {
                    member.LeaveAt = now + TimeSpan.FromSeconds(_options.LeaveGraceSeconds);
                    session.ScheduleCheck(_time, member.LeaveAt.Value - now, () => _ = SweepAsync());
                }
            }

            foreach (var (name, value) in left)
            {
                await AppendAsync(sessionId, name, value, now).ConfigureAwait(false);
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
            (string Name, JsonObject Value)? update = null;
            var now = _time.GetUtcNow();
            lock (session)
            {
                if (!session.Members.TryGetValue(memberId, out var member) || member.Connections.Count == 0)
                {
                    return PresenceUpdate.NotPresent;
                }

                member.State = state;
                var window = TimeSpan.FromMilliseconds(_options.UpdateCoalesceMilliseconds);
                if (session.Crowded)
                {
                    member.UpdatePending = false;
                    session.Updated++;
                    update = Tally(session, now);
                }
                else if (member.LastUpdateAt is { } last && now - last < window)
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
                    update = ("presence.update", Describe(member));
                }
            }

            if (update is { } logged)
            {
                await AppendAsync(sessionId, logged.Name, logged.Value, now).ConfigureAwait(false);
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
                            Depart(session, member, "expired", now, events);
                            continue;
                        }

                        if (member.LeaveAt is { } leaveAt && leaveAt <= now && member.Connections.Count == 0)
                        {
                            Depart(session, member, "left", now, events);
                            continue;
                        }

                        if (member.UpdatePending && member.LastUpdateAt is { } last && now - last >= window)
                        {
                            member.UpdatePending = false;
                            member.LastUpdateAt = now;
                            if (session.Crowded)
                            {
                                session.Updated++;
                                Add(events, Tally(session, now));
                            }
                            else
                            {
                                events.Add(("presence.update", Describe(member)));
                            }
                        }
                    }

                    if (session.CountPending && now - session.LastCountAt >= TimeSpan.FromMilliseconds(_options.CountIntervalMilliseconds))
                    {
                        events.Add(("presence.count", TakeCount(session, now)));
                    }
                }

                foreach (var (name, value) in events)
                {
                    await AppendAsync(sessionId, name, value, now).ConfigureAwait(false);
                }

                // Forget an empty session only after its leaves are logged: a connect waiting on this gate then sees
                // Removed, starts afresh, and its join lands after the leave.
                lock (session)
                {
                    if (session.Members.Count == 0 && !session.CountPending && _sessions.TryRemove(new KeyValuePair<string, SessionMembers>(sessionId, session)))
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

    private static void Add(List<(string Name, JsonObject Value)> events, (string Name, JsonObject Value)? logged)
    {
        if (logged is { } value)
        {
            events.Add(value);
        }
    }

    /// <summary>
    /// A member leaves: its <c>presence.leave</c>, or in a crowded session a count (now or when due). A crowd ends only
    /// once half of <see cref="PresenceOptions.CoalesceAbove"/> members are left, so one client joining and leaving at
    /// the threshold cannot make every change a snapshot: the leave that ends it logs the count at once and a
    /// <c>presence.snapshot</c> of everyone left, from which members are announced one by one again. Called under the
    /// session's lock.
    /// </summary>
    private void Depart(SessionMembers session, Member member, string reason, DateTimeOffset now, List<(string Name, JsonObject Value)> events)
    {
        var left = Leave(session, member, reason);
        if (!session.Crowded)
        {
            events.Add(("presence.leave", left));
            return;
        }

        session.Left++;
        if (session.Members.Count > _options.CoalesceAbove / 2)
        {
            Add(events, Tally(session, now));
            return;
        }

        session.Crowded = false;
        events.Add(("presence.count", TakeCount(session, now)));
        var everyone = session.Members.Values.OrderBy(m => m.Identity.Id, StringComparer.Ordinal).Select(m => (JsonNode)Describe(m)).ToArray();
        events.Add(("presence.snapshot", new JsonObject { ["members"] = new JsonArray(everyone), ["total"] = everyone.Length }));
    }

    /// <summary>
    /// A change of a crowded session was counted: its <c>presence.count</c> when one is due, else null and one scheduled
    /// for when the interval since the last ends. Called under the session's lock.
    /// </summary>
    private (string Name, JsonObject Value)? Tally(SessionMembers session, DateTimeOffset now)
    {
        var interval = TimeSpan.FromMilliseconds(_options.CountIntervalMilliseconds);
        if (now - session.LastCountAt >= interval)
        {
            return ("presence.count", TakeCount(session, now));
        }

        if (!session.CountPending)
        {
            session.CountPending = true;
            session.ScheduleCheck(_time, session.LastCountAt + interval - now, () => _ = SweepAsync());
        }

        return null;
    }

    private static JsonObject TakeCount(SessionMembers session, DateTimeOffset now)
    {
        var count = new JsonObject
        {
            ["members"] = session.Members.Count,
            ["joined"] = session.Joined,
            ["left"] = session.Left,
            ["updated"] = session.Updated,
        };
        session.Joined = session.Left = session.Updated = 0;
        session.CountPending = false;
        session.LastCountAt = now;
        return count;
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

    /// <summary>Logs a presence event stamped with the time its change was decided (a count's interval is measured from it).</summary>
    private async Task AppendAsync(string sessionId, string name, JsonObject value, DateTimeOffset at)
    {
        try
        {
            await _log.AppendAsync(sessionId, [AgUi.Event(AgUi.Custom, ("name", name), ("value", value), ("timestamp", at.ToUnixTimeMilliseconds()))], null, null, CancellationToken.None, buffered: true).ConfigureAwait(false);
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

    private static partial class Log
    {
        [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Member {MemberId} of session {SessionId} expired: no connection renewed within the TTL")]
        public static partial void Expired(ILogger logger, string sessionId, string memberId);

        [LoggerMessage(EventId = 6002, Level = LogLevel.Warning, Message = "Could not log {Event} in session {SessionId}")]
        public static partial void AppendFailed(ILogger logger, string sessionId, string @event, Exception exception);
    }
}
