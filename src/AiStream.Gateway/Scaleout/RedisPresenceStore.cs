using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// Presence shared by every node. Each connection is an entry in a per-session sorted set scored by when it expires;
/// every change (and the join, leave or update event it causes) is one Lua script, so a member with tabs on two nodes
/// is one member with two connections and joins once. Each node renews all of its own connections in one script per
/// session every third of the TTL, so a node that dies stops renewing and any other node's sweep expires its
/// connections and logs the leaves. Redis 7.0 has no per-field hash expiry, hence the sorted sets.
/// </summary>
internal sealed partial class RedisPresenceStore(
    RedisConnection redis,
    RedisSessionStore sessions,
    IOptions<PresenceOptions> options,
    IOptions<SessionsOptions> sessionOptions,
    TimeProvider time,
    ILogger<RedisPresenceStore> logger) : IPresenceStore
{
    private static readonly string[] KeyNames = ["pc", "pn", "pm", "pa", "pl", "pu", "pt", "seq", "log", "ps", "lb"];

    // This node's connections: session -> "member\tconnection" -> how to describe the member.
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, LocalConnection>> _local = new(StringComparer.Ordinal);
    private readonly PresenceOptions _options = options.Value;

    public TimeSpan RenewInterval => TimeSpan.FromSeconds(_options.TtlSeconds / 3);

    public async Task ConnectAsync(string sessionId, MemberIdentity identity, string connectionId, JsonObject? state = null)
    {
        var connection = new LocalConnection(identity, state ?? new JsonObject());
        var reply = await RunAsync(sessionId, RedisScripts.PresenceConnect, Common(sessionId),
            [identity.Id, connectionId, Expiry(), connection.Described(), connection.DescribedForLeave()]).ConfigureAwait(false);
        if (reply is not null && (long)((RedisResult[])reply!)[0] > 0)
        {
            throw new MemberLimitExceededException(
                $"Session '{sessionId}' has its maximum of {_options.MaxMembers} members (AiStream:Presence:MaxMembers); try again later.");
        }

        // Renewed from now on, and written again by the renewal if Redis was away (reply null): only once accepted, so
        // a renewal meanwhile cannot make a refused client a member.
        _local.GetOrAdd(sessionId, _ => new(StringComparer.Ordinal))[identity.Id + "\t" + connectionId] = connection;
    }

    // Renewal is per node, not per connection: RenewAllAsync renews every local connection of a session in one call.
    public void Renew(string sessionId, string memberId, string connectionId)
    {
    }

    public async Task DisconnectAsync(string sessionId, string memberId, string connectionId, bool immediate = false)
    {
        if (_local.TryGetValue(sessionId, out var connections))
        {
            connections.TryRemove(memberId + "\t" + connectionId, out _);
        }

        var leaveAt = immediate || _options.LeaveGraceSeconds <= 0
            ? 0
            : (time.GetUtcNow() + TimeSpan.FromSeconds(_options.LeaveGraceSeconds)).ToUnixTimeMilliseconds();
        await RunAsync(sessionId, RedisScripts.PresenceDisconnect, Common(sessionId), [memberId, connectionId, leaveAt]).ConfigureAwait(false);
    }

    public async Task<PresenceUpdate> SetStateAsync(string sessionId, string memberId, JsonObject state)
    {
        if (JsonSerializer.SerializeToUtf8Bytes(state, SessionsJsonContext.Default.JsonObject).Length > _options.MaxStateBytes)
        {
            return PresenceUpdate.TooLarge;
        }

        // Describe the member with the identity this node knows, or the one in Redis when its connections are elsewhere.
        string? described = null;
        if (_local.TryGetValue(sessionId, out var connections))
        {
            foreach (var (key, connection) in connections)
            {
                if (key.StartsWith(memberId + "\t", StringComparison.Ordinal))
                {
                    connection.State = state;
                    described = connection.Described();
                }
            }
        }

        if (described is null)
        {
            var stored = (string?)await Unavailable(() => redis.Database.HashGetAsync(redis.Key(sessionId, "pm"), memberId)).ConfigureAwait(false);
            if (stored is null)
            {
                return PresenceUpdate.NotPresent;
            }

            var member = (JsonObject)JsonNode.Parse(stored + "}")!;
            member["state"] = state.DeepClone();
            described = Open(member);
        }

        var reply = (RedisResult[]?)await RunAsync(sessionId, RedisScripts.PresenceSetState, Common(sessionId),
            [memberId, described, _options.UpdateCoalesceMilliseconds]).ConfigureAwait(false);
        return reply is not null && (long)reply[0] == -1 ? PresenceUpdate.NotPresent : PresenceUpdate.Applied;
    }

    public async ValueTask<(IReadOnlyList<JsonObject> Members, int Total)> ListAsync(string sessionId, int limit, CancellationToken cancellationToken)
    {
        try
        {
            return await ListFromRedisAsync(sessionId, limit).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("Presence (Redis) is unreachable; try again shortly.", ex);
        }
    }

    private static async Task<T> Unavailable<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            throw new SessionStoreUnavailableException("Presence (Redis) is unreachable; try again shortly.", ex);
        }
    }

    private async Task<(IReadOnlyList<JsonObject> Members, int Total)> ListFromRedisAsync(string sessionId, int limit)
    {
        var db = redis.Database;
        var present = (await db.SetMembersAsync(redis.Key(sessionId, "pa")).ConfigureAwait(false))
            .Select(m => (string)m!).Order(StringComparer.Ordinal).ToList();
        if (present.Count == 0)
        {
            return ([], 0);
        }

        var shown = present.Take(limit).ToList();
        var fields = shown.Select(m => (RedisValue)m).ToArray();
        var described = await db.HashGetAsync(redis.Key(sessionId, "pm"), fields).ConfigureAwait(false);
        var counts = await db.HashGetAsync(redis.Key(sessionId, "pn"), fields).ConfigureAwait(false);
        var members = new List<JsonObject>(shown.Count);
        for (var i = 0; i < shown.Count; i++)
        {
            if (described[i].HasValue)
            {
                var count = counts[i].HasValue ? (long)counts[i] : 0;
                members.Add((JsonObject)JsonNode.Parse((string)described[i]! + ",\"connections\":" + Math.Max(0, count).ToString(CultureInfo.InvariantCulture) + "}")!);
            }
        }

        return (members, present.Count);
    }

    /// <summary>
    /// Renews every connection this node holds, one script per session, all issued before any is awaited (one pipelined
    /// pass); re-joins members Redis forgot (it restarted empty). Each script also records when its session next needs
    /// a sweep.
    /// </summary>
    internal async Task RenewAllAsync(CancellationToken cancellationToken)
    {
        var renewals = new List<Task>(_local.Count);
        foreach (var (sessionId, connections) in _local)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }

            renewals.Add(RenewAsync(sessionId, connections));
        }

        await Task.WhenAll(renewals).ConfigureAwait(false);
    }

    private async Task RenewAsync(string sessionId, ConcurrentDictionary<string, LocalConnection> connections)
    {
        if (connections.IsEmpty)
        {
            _local.TryRemove(new KeyValuePair<string, ConcurrentDictionary<string, LocalConnection>>(sessionId, connections));
            return;
        }

        var args = new List<RedisValue>();
        var expiry = Expiry();
        foreach (var (key, connection) in connections)
        {
            var tab = key.IndexOf('\t', StringComparison.Ordinal);
            args.AddRange([key[..tab], key[(tab + 1)..], expiry, connection.Described(), connection.DescribedForLeave()]);
        }

        await RunAsync(sessionId, RedisScripts.PresenceConnect, Common(sessionId), [.. args]).ConfigureAwait(false);
    }

    /// <summary>
    /// Expires connections, completes leaves and flushes coalesced updates and counts in the sessions that are due, by
    /// the due index only, their scripts all issued before any is awaited (one pipelined pass).
    /// </summary>
    /// <remarks>
    /// This node's own sessions need no sweep of their own each tick (they once got one): every script that changes a
    /// session's presence records when it next needs a sweep, and every renewal (each third of the TTL) records it again
    /// for each session this node has connections in. So a due time lost between a script and its index write (a
    /// dropped connection, or two nodes' writes to the index crossing) is put back within a renewal by any node that
    /// still has connections there; a session nobody holds connections in any more was never covered by that sweep.
    /// </remarks>
    internal async Task SweepAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var due = await redis.Database.SortedSetRangeByScoreAsync(redis.PresenceDue, double.NegativeInfinity, now, take: 2000).ConfigureAwait(false);
        var sweeps = new List<Task>(due.Length);
        foreach (var sessionId in due.Select(d => (string)d!))
        {
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }

            sweeps.Add(RunAsync(sessionId, RedisScripts.PresenceSweep, Common(sessionId), []));
        }

        await Task.WhenAll(sweeps).ConfigureAwait(false);
    }

    private async Task<RedisResult?> RunAsync(string sessionId, string script, RedisValue[] common, RedisValue[] args)
    {
        var keys = KeyNames.Select(name => redis.Key(sessionId, name)).ToArray();
        try
        {
            // Presence events go into the session's log: this node's events buffered during an outage go first.
            await sessions.FlushBufferedAsync(sessionId, CancellationToken.None).ConfigureAwait(false);
            var result = await redis.Database.ScriptEvaluateAsync(script, keys, [.. common, .. args]).ConfigureAwait(false);
            var reply = (RedisResult[])result!;
            if (reply.Length == 4 && (long)reply[2] is var first and > 0 && sessions.Scripted.Listening)
            {
                Report(sessionId, first, (RedisResult[])reply[3]!);
            }

            // The script answers when the session next needs a sweep; remember it where every node looks.
            var next = (long)reply[1];
            if (next >= 0)
            {
                _ = redis.Database.SortedSetAddAsync(redis.PresenceDue, sessionId, next, CommandFlags.FireAndForget);
            }
            else
            {
                _ = redis.Database.SortedSetRemoveAsync(redis.PresenceDue, sessionId, CommandFlags.FireAndForget);
            }

            return result;
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            // The next renewal after Redis is back restores this node's connections (and any joins).
            Log.Unavailable(logger, sessionId, ex.Message);
            return null;
        }
    }

    /// <summary>
    /// Reports what a presence script logged, once, from the node that ran it (webhooks). The change is already in
    /// Redis, so a failure here is logged and never fails the caller.
    /// </summary>
    private void Report(string sessionId, long first, RedisResult[] logged)
    {
        try
        {
            var events = new JsonObject[logged.Length];
            for (var i = 0; i < logged.Length; i++)
            {
                events[i] = (JsonObject)JsonNode.Parse((string)logged[i]!)!;
            }

            sessions.Scripted.Report(sessionId, first, events);
        }
        catch (Exception ex) when (ex is JsonException or InvalidCastException or InvalidOperationException)
        {
            Log.NotReported(logger, sessionId, ex);
        }
    }

    private RedisValue[] Common(string sessionId)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var o = sessionOptions.Value;
        return
        [
            redis.Channel(sessionId).ToString(), now, o.MaxEvents,
            now - (long)TimeSpan.FromMinutes(o.MaxEventAgeMinutes).TotalMilliseconds, (long)sessions.KeyTtl.TotalMilliseconds,
            _options.MaxMembers, _options.CoalesceAbove, _options.CountIntervalMilliseconds, o.MaxLogBytes,
        ];
    }

    private long Expiry() => (time.GetUtcNow() + TimeSpan.FromSeconds(_options.TtlSeconds)).ToUnixTimeMilliseconds();

    /// <summary>A member's JSON without its closing brace; the script adds the connection count it alone knows.</summary>
    private static string Open(JsonObject member)
    {
        var json = JsonSerializer.Serialize(member, SessionsJsonContext.Default.JsonObject);
        return json[..^1];
    }

    private sealed class LocalConnection(MemberIdentity identity, JsonObject state)
    {
        public JsonObject State { get; set; } = state;

        public string Described() => Open(Describe(includeState: true));

        public string DescribedForLeave() => Open(Describe(includeState: false));

        private JsonObject Describe(bool includeState)
        {
            var value = new JsonObject { ["id"] = identity.Id, ["name"] = identity.Name, ["kind"] = identity.Kind };
            if (includeState)
            {
                value["state"] = State.DeepClone();
            }

            if (identity.Color is { } color)
            {
                value["color"] = color;
            }

            return value;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 8201, Level = LogLevel.Warning, Message = "Presence of session {SessionId} not updated in Redis ({Reason}); the next renewal restores it")]
        public static partial void Unavailable(ILogger logger, string sessionId, string reason);

        [LoggerMessage(EventId = 8202, Level = LogLevel.Error, Message = "Presence events of session {SessionId} were logged but could not be reported to webhooks")]
        public static partial void NotReported(ILogger logger, string sessionId, Exception exception);
    }
}
