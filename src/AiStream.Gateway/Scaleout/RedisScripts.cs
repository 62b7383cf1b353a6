namespace AiStream.Gateway.Scaleout;

/// <summary>
/// The Lua scripts that make each change to a session one atomic step in Redis: assign positions, append to the
/// session's stream, trim it, and publish on its sharded channel. Every key a script touches (and its channel)
/// carries the session's hash tag, so on a Redis Cluster each runs on the one node owning that slot.
/// </summary>
/// <remarks>
/// Log entries have the id <c>seq-0</c>, so a resume is an <c>XRANGE</c> from a position. A published message is
/// <c>firstSeq\nrunId\nappendedAt\nevent\nevent...</c>: events are compact JSON, which never holds a raw newline.
/// </remarks>
internal static class RedisScripts
{
    // append(...) assigns positions after max(head, floor) (the floor keeps positions increasing when Redis lost its
    // data but a node still knows how far the session got), adds each body with ,"seq":N spliced before its closing
    // brace, trims the oldest entries while the stream holds more than maxLen entries, more than maxBytes of bodies
    // (counted in bytesKey) or entries older than the cutoff (always keeping the newest), refreshes the keys' lifetime
    // and publishes the batch. Returns first and last position.
    private const string Append = """
        local function append(seqKey, logKey, bytesKey, channel, runId, now, maxLen, cutoff, ttl, floor, bodies, maxBytes)
          local head = tonumber(redis.call('GET', seqKey) or '0')
          if head < floor then head = floor end
          local first = head + 1
          local parts = {tostring(first), runId, now}
          local added = 0
          for i = 1, #bodies do
            head = head + 1
            local body = string.sub(bodies[i], 1, -2) .. ',"seq":' .. head .. '}'
            redis.call('XADD', logKey, head .. '-0', 'e', body, 'r', runId, 't', now)
            parts[#parts + 1] = body
            added = added + #body
          end
          redis.call('SET', seqKey, head, 'PX', ttl)
          local bytes = redis.call('INCRBY', bytesKey, added)
          local entries = redis.call('XLEN', logKey)
          maxLen = tonumber(maxLen)
          maxBytes = tonumber(maxBytes)
          for _ = 1, #bodies + 100 do
            if entries <= 1 then break end
            local oldest = redis.call('XRANGE', logKey, '-', '+', 'COUNT', 1)
            if #oldest == 0 then break end
            if entries <= maxLen and bytes <= maxBytes and tonumber(oldest[1][2][6]) >= cutoff then break end
            redis.call('XDEL', logKey, oldest[1][1])
            entries = entries - 1
            bytes = redis.call('INCRBY', bytesKey, -#oldest[1][2][2])
          end
          if bytes < 0 then redis.call('SET', bytesKey, 0) end
          redis.call('PEXPIRE', bytesKey, ttl)
          redis.call('PEXPIRE', logKey, ttl)
          redis.call('SPUBLISH', channel, table.concat(parts, '\n'))
          return first, head
        end

        """;

    /// <summary>
    /// KEYS: seq, log, idempotency (or any key of the session), runs, log bytes. ARGV: channel, runId, now, maxLen,
    /// cutoff, ttl, floor, expected (-1: any), idempotencyTtl (0: none), owner ("" for events of no run), maxBytes,
    /// bodies... Returns
    /// {first, last, 0}; {0, 0, 1} when the head is not <c>expected</c> (nothing appended); {-1, "first:last"} when the
    /// idempotency key was seen; {-2} when the run is registered to another owner or was ended by another node (a
    /// node that stalled past its liveness must not keep writing a run that was declared lost).
    /// </summary>
    public const string AppendEvents = Append + """
        if ARGV[10] ~= '' then
          local owner = redis.call('HGET', KEYS[4], ARGV[2])
          if owner and owner ~= ARGV[10] then return {-2} end
        end
        local idemTtl = tonumber(ARGV[9])
        if idemTtl > 0 then
          local prior = redis.call('GET', KEYS[3])
          if prior then return {-1, prior} end
        end
        local expected = tonumber(ARGV[8])
        local floor = tonumber(ARGV[7])
        if expected >= 0 then
          local head = tonumber(redis.call('GET', KEYS[1]) or '0')
          if head < floor then head = floor end
          if head ~= expected then return {0, 0, 1} end
        end
        local bodies = {}
        for i = 12, #ARGV do bodies[#bodies + 1] = ARGV[i] end
        local first, last = append(KEYS[1], KEYS[2], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], floor, bodies, ARGV[11])
        if idemTtl > 0 then redis.call('SET', KEYS[3], first .. ':' .. last, 'PX', idemTtl) end
        return {first, last, 0}
        """;

    /// <summary>
    /// Ends a run whose node died. KEYS: seq, log, runs, log bytes. ARGV: channel, runId, now, maxLen, cutoff, ttl, owner,
    /// maxBytes, bodies...
    /// Appends only if the run is still registered to <c>owner</c>, so exactly one node ends it, and marks it ended. Returns
    /// the first position it appended when it did (the node that ran it reports those events), else 0.
    /// </summary>
    public const string EndOrphan = Append + """
        if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[7] then return 0 end
        -- A tombstone, not a delete: the old owner's late appends are refused (see AppendEvents).
        redis.call('HSET', KEYS[3], ARGV[2], 'ended')
        local bodies = {}
        for i = 9, #ARGV do bodies[#bodies + 1] = ARGV[i] end
        local first = append(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], 0, bodies, ARGV[8])
        return first
        """;

    /// <summary>
    /// Raises a session's position counter to what a node knows (after Redis lost its data), so no later writer, with or
    /// without a copy of the session, reuses a position. KEYS: seq. ARGV: head, ttl. Returns 1 when it raised it.
    /// </summary>
    public const string RaiseFloor = """
        if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 1
        """;

    /// <summary>Stores a checkpoint (<c>seq\n[...]</c>) unless a newer one is there. KEYS: checkpoint. ARGV: seq, value, ttl.</summary>
    public const string SaveCheckpoint = """
        local current = redis.call('GET', KEYS[1])
        if current then
          local seq = tonumber(string.match(current, '^(%d+)'))
          if seq and seq >= tonumber(ARGV[1]) then return 0 end
        end
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
        return 1
        """;

    // Presence. Keys: pc (connections "member\tconnection" scored by expiry), pn (member -> live connection count),
    // pm (member -> its description as a JSON object missing its closing "connections" field; member.."\tL" -> the
    // same without state, for leaves), pa (members announced with a join), pl (members leaving, scored by when),
    // pu (members with a coalesced update pending, scored by when), pt (member -> when its last update was logged),
    // ps (a crowded session's changes since its last presence.count: joined, left, updated, last, due).
    // Events are built here, because only here is the connection count known. The common arguments are channel, now,
    // maxLen, cutoff, ttl, maxMembers, coalesceAbove, countInterval, maxBytes; a script's own start at ARGV[10].
    // Every presence script answers {status, due, first position logged (0: none), the events logged}: the node that
    // ran it reports those events to the event sinks (webhooks), as the writer of any other append does, so each is
    // reported once whether or not any node mirrors the session.
    private const string Presence = Append + """
        local pc, pn, pm, pa, pl, pu, pt, seqKey, logKey, ps, bytesKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
        local channel, now, maxLen, cutoff, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
        local maxMembers, above, interval, maxBytes = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
        local events = {}
        local logged = 0
        local function event(name, value)
          events[#events + 1] = '{"type":"CUSTOM","name":"' .. name .. '","value":' .. value .. ',"timestamp":' .. now .. '}'
        end
        local function count(member) return tonumber(redis.call('HGET', pn, member) or '0') end
        -- A change of a crowded session is counted; finish() logs the count once the interval since the last has passed.
        -- A session is crowded from when it passes `above` members until it is back to half of that.
        local function crowded() return redis.call('HGET', ps, 'crowded') == '1' end
        local function tally(field)
          redis.call('HINCRBY', ps, field, 1)
          if not redis.call('HGET', ps, 'due') then
            local last = tonumber(redis.call('HGET', ps, 'last') or '0')
            redis.call('HSET', ps, 'due', math.max(last + interval, tonumber(now)))
          end
        end
        local function flushCount()
          local c = redis.call('HMGET', ps, 'joined', 'left', 'updated')
          event('presence.count', '{"members":' .. redis.call('SCARD', pa) .. ',"joined":' .. (c[1] or '0') .. ',"left":' .. (c[2] or '0')
            .. ',"updated":' .. (c[3] or '0') .. '}')
          redis.call('HDEL', ps, 'joined', 'left', 'updated', 'due')
          redis.call('HSET', ps, 'last', now)
        end
        -- Everyone present, once a crowd is over: members are announced one by one again from here.
        local function resync()
          local list = {}
          for _, m in ipairs(redis.call('SMEMBERS', pa)) do
            local d = redis.call('HGET', pm, m)
            if d then list[#list + 1] = d .. ',"connections":' .. count(m) .. '}' end
          end
          table.sort(list)
          event('presence.snapshot', '{"members":[' .. table.concat(list, ',') .. '],"total":' .. #list .. '}')
        end
        local function leave(member, reason)
          local described = redis.call('HGET', pm, member .. '\tL')
          local counted = crowded()
          redis.call('SREM', pa, member)
          redis.call('HDEL', pn, member)
          redis.call('HDEL', pm, member, member .. '\tL')
          redis.call('ZREM', pl, member)
          redis.call('ZREM', pu, member)
          redis.call('HDEL', pt, member)
          if counted then
            tally('left')
            if redis.call('SCARD', pa) <= math.floor(above / 2) then
              redis.call('HDEL', ps, 'crowded')
              flushCount()
              resync()
            end
          elseif described then event('presence.leave', described .. ',"connections":0,"reason":"' .. reason .. '"}') end
        end
        local function finish()
          local countDue = tonumber(redis.call('HGET', ps, 'due') or '-1')
          if countDue >= 0 and countDue <= tonumber(now) then
            flushCount()
            countDue = -1
          end
          for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
          if #events > 0 then logged = append(seqKey, logKey, bytesKey, channel, '', now, maxLen, cutoff, ttl, 0, events, maxBytes) end
          local due = countDue
          for _, key in ipairs({pc, pl, pu}) do
            local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
            if #first > 0 and (due < 0 or tonumber(first[2]) < due) then due = tonumber(first[2]) end
          end
          return due
        end

        """;

    /// <summary>
    /// Adds or renews connections. ARGV after the common nine: (member, connection, expiry, described,
    /// describedForLeave) repeated. A member that was not announced joins, unless the session has maxMembers already.
    /// Returns {refused, due, logged, events}: how many connections were refused for that, the next due time, and what
    /// was logged.
    /// </summary>
    public const string PresenceConnect = Presence + """
        local refused = 0
        for i = 10, #ARGV, 5 do
          local member, connection, expiry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
          local present = redis.call('SISMEMBER', pa, member) == 1
          if not present and redis.call('SCARD', pa) >= maxMembers then
            refused = refused + 1
          else
            if redis.call('ZADD', pc, expiry, member .. '\t' .. connection) == 1 then redis.call('HINCRBY', pn, member, 1) end
            redis.call('ZREM', pl, member)
            if not present then
              redis.call('SADD', pa, member)
              redis.call('HSET', pm, member, ARGV[i + 3], member .. '\tL', ARGV[i + 4])
              if crowded() or redis.call('SCARD', pa) > above then
                redis.call('HSET', ps, 'crowded', '1')
                tally('joined')
              else
                event('presence.join', ARGV[i + 3] .. ',"connections":' .. count(member) .. '}')
              end
            end
          end
        end
        local due = finish()
        return {refused, due, logged, events}
        """;

    /// <summary>Removes a connection. ARGV: common nine, member, connection, leaveAt (0: at once). Returns {0, due, logged, events}.</summary>
    public const string PresenceDisconnect = Presence + """
        local member, connection, leaveAt = ARGV[10], ARGV[11], tonumber(ARGV[12])
        if redis.call('ZREM', pc, member .. '\t' .. connection) == 1 and redis.call('HINCRBY', pn, member, -1) <= 0
          and redis.call('SISMEMBER', pa, member) == 1 then
          if leaveAt <= 0 then leave(member, 'left') else redis.call('ZADD', pl, leaveAt, member) end
        end
        local due = finish()
        return {0, due, logged, events}
        """;

    /// <summary>
    /// Replaces a member's state. ARGV: common nine, member, described, windowMs. Returns {status, due}: status -1 not
    /// present, 1 logged, 0 coalesced (logged when the window closes, or counted in a crowded session); then logged, events.
    /// </summary>
    public const string PresenceSetState = Presence + """
        local member, described, window = ARGV[10], ARGV[11], tonumber(ARGV[12])
        if redis.call('SISMEMBER', pa, member) == 0 or count(member) <= 0 then return {-1, -1} end
        redis.call('HSET', pm, member, described)
        local last = tonumber(redis.call('HGET', pt, member) or '-1')
        local status = 1
        if crowded() then
          redis.call('ZREM', pu, member)
          tally('updated')
          status = 0
        elseif last >= 0 and tonumber(now) - last < window then
          redis.call('ZADD', pu, 'NX', last + window, member)
          status = 0
        else
          redis.call('HSET', pt, member, now)
          redis.call('ZREM', pu, member)
          event('presence.update', described .. ',"connections":' .. count(member) .. '}')
        end
        local due = finish()
        return {status, due, logged, events}
        """;

    /// <summary>Expires connections, completes due leaves, flushes due updates and counts. ARGV: the common nine. Returns {0, due, logged, events}.</summary>
    public const string PresenceSweep = Presence + """
        for _, entry in ipairs(redis.call('ZRANGEBYSCORE', pc, '-inf', now, 'LIMIT', 0, 1000)) do
          redis.call('ZREM', pc, entry)
          local member = string.match(entry, '^(.*)\t')
          if redis.call('HINCRBY', pn, member, -1) <= 0 and redis.call('SISMEMBER', pa, member) == 1 then leave(member, 'expired') end
        end
        for _, member in ipairs(redis.call('ZRANGEBYSCORE', pl, '-inf', now)) do
          if count(member) <= 0 and redis.call('SISMEMBER', pa, member) == 1 then leave(member, 'left') else redis.call('ZREM', pl, member) end
        end
        for _, member in ipairs(redis.call('ZRANGEBYSCORE', pu, '-inf', now)) do
          redis.call('ZREM', pu, member)
          if redis.call('SISMEMBER', pa, member) == 1 then
            redis.call('HSET', pt, member, now)
            if crowded() then tally('updated')
            else event('presence.update', redis.call('HGET', pm, member) .. ',"connections":' .. count(member) .. '}') end
          end
        end
        local due = finish()
        return {0, due, logged, events}
        """;
}
