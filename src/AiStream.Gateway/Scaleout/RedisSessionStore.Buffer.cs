using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>Writing: appends through the mirror (one Lua script per batch), and the outage buffer that keeps local delivery going and writes in order when Redis is back.</summary>
internal sealed partial class RedisSessionStore
{
    private async Task<AppendResult> AppendThroughMirrorAsync(Mirror mirror, IReadOnlyList<JsonObject> objects, byte[][] bodies, string? runId, string? idempotencyKey, long now, bool buffered,
        CancellationToken cancellationToken)
    {
        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Before Redis stores anything: a batch that would take the state past its limits is refused here. (Every
            // node also skips such an event when it applies the log, so a racing writer cannot poison the session.)
            mirror.Log.CheckState(objects);
            if (mirror.BufferedCount == 0)
            {
                try
                {
                    var (first, last, replayed, _) = await RunAppendAsync(mirror.SessionId, bodies, runId, idempotencyKey, now, floor: mirror.Log.Head, expected: -1)
                        .ConfigureAwait(false);
                    if (replayed)
                    {
                        return new AppendResult([], true, RedisSessionProtocol.Range(first, last));
                    }

                    if (first > mirror.Log.Head + 1 && mirror.Loaded)
                    {
                        await FillAsync(mirror, first - 1).ConfigureAwait(false);
                    }

                    var stored = RedisSessionProtocol.Stored(objects, bodies, runId, now, first);
                    mirror.Log.ApplyStored(stored);
                    mirror.Touch();
                    return new AppendResult(stored.Select(e => e.Event).ToList(), false, RedisSessionProtocol.Range(first, last));
                }
                catch (Exception ex) when (IsRedisFailure(ex) && buffered)
                {
                    Log.Buffering(_logger, mirror.SessionId, ex.Message);
                }
                catch (Exception ex) when (IsRedisFailure(ex))
                {
                    throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; retry the publish with the same Idempotency-Key.", ex);
                }
            }
            else if (!buffered)
            {
                throw new SessionStoreUnavailableException("The session store (Redis) is unreachable; retry the publish with the same Idempotency-Key.");
            }

            if (mirror.BufferedCount + bodies.Length > _scaleout.MaxBufferedEvents)
            {
                throw new SessionStoreUnavailableException($"Redis has been unreachable for too long: more than {_scaleout.MaxBufferedEvents} events are buffered for this session.");
            }

            // Redis is away: take the next positions here, deliver to local watchers now, write them later in order.
            var firstLocal = mirror.Log.Head + 1;
            var pending = RedisSessionProtocol.Stored(objects, bodies, runId, now, firstLocal);
            mirror.Buffer(new Pending(bodies, runId, now, firstLocal));
            mirror.Log.ApplyStored(pending);
            mirror.Touch();
            return new AppendResult(pending.Select(e => e.Event).ToList(), false, RedisSessionProtocol.Range(firstLocal, firstLocal + bodies.Length - 1));
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>
    /// Writes this node's buffered events of a session, if it holds any, before another writer of this node (presence)
    /// appends to the same log: otherwise that append would take the positions the buffered events were delivered with.
    /// Throws the Redis failure when Redis is still away.
    /// </summary>
    internal async Task FlushBufferedAsync(string sessionId, CancellationToken cancellationToken)
    {
        if (_mirrors.TryGetValue(sessionId, out var mirror) && mirror.BufferedCount > 0)
        {
            await FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes events buffered while Redis was away, in order, at the positions they were delivered with. If Redis moved
    /// on meanwhile (another node wrote), they are written after what is there and this node's watchers are reset.
    /// </summary>
    private async Task FlushAsync(Mirror mirror, CancellationToken cancellationToken)
    {
        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var moved = mirror.Conflict;
            while (mirror.PeekBuffered() is { } pending)
            {
                var expected = pending.FirstSeq - 1;
                long first;
                bool conflict;
                try
                {
                    (first, _, _, conflict) = await RunAppendAsync(mirror.SessionId, pending.Bodies, pending.RunId, null, pending.AppendedAt,
                        floor: moved ? 0 : expected, expected: moved ? -1 : expected).ConfigureAwait(false);
                }
                catch (RunFencedException)
                {
                    // The run was declared lost while this node could not reach Redis: its buffered events are not
                    // the session's; this node's watchers are reset to what the log really holds.
                    mirror.DropBuffered();
                    moved = true;
                    continue;
                }

                if (conflict)
                {
                    if (await AlreadyWrittenAsync(mirror.SessionId, pending).ConfigureAwait(false))
                    {
                        mirror.DropBuffered();
                        continue; // an earlier attempt got through but its answer was lost
                    }

                    moved = true;
                    continue;
                }

                mirror.DropBuffered();
                Log.Flushed(_logger, mirror.SessionId, pending.Bodies.Length, first);
            }

            mirror.Conflict = false;
            if (moved)
            {
                await ResetAsync(mirror, "diverged", "Events were written elsewhere while this node could not reach Redis; positions were reassigned.").ConfigureAwait(false);
            }
            else
            {
                mirror.Loaded = true;
                await CheckpointAsync(mirror, _time.GetUtcNow(), force: true).ConfigureAwait(false);
            }
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    private async Task<bool> AlreadyWrittenAsync(string sessionId, Pending pending)
    {
        var entries = await _redis.Database.StreamRangeAsync(_redis.Key(sessionId, "log"), $"{pending.FirstSeq}-0", $"{pending.FirstSeq}-0").ConfigureAwait(false);
        return entries.Length == 1 && ((byte[])entries[0]["e"]!).AsSpan().SequenceEqual(RedisSessionProtocol.WithSeq(pending.Bodies[0], pending.FirstSeq));
    }

    private async Task<(long First, long Last, bool Replayed, bool Conflict)> RunAppendAsync(string sessionId, byte[][] bodies, string? runId, string? idempotencyKey,
        long now, long floor, long expected)
    {
        var args = new RedisValue[11 + bodies.Length];
        args[0] = _redis.Channel(sessionId).ToString();
        args[1] = runId ?? string.Empty;
        args[2] = now;
        args[3] = _options.MaxEvents;
        args[4] = Cutoff(now);
        args[5] = (long)KeyTtl.TotalMilliseconds;
        args[6] = floor;
        args[7] = expected;
        args[8] = idempotencyKey is null ? 0 : (long)TimeSpan.FromMinutes(_options.IdempotencyKeyMinutes).TotalMilliseconds;
        // Events of a run are written only while this process owns the run (see RedisScripts.AppendEvents).
        args[9] = runId is null ? string.Empty : _redis.NodeId;
        args[10] = _options.MaxLogBytes;
        for (var i = 0; i < bodies.Length; i++)
        {
            args[11 + i] = bodies[i];
        }

        var idem = idempotencyKey is null ? _redis.Key(sessionId, "seq") : _redis.Key(sessionId, "idem:" + idempotencyKey);
        var reply = (RedisResult[])(await _redis.Database.ScriptEvaluateAsync(RedisScripts.AppendEvents,
            [_redis.Key(sessionId, "seq"), _redis.Key(sessionId, "log"), idem, _redis.Key(sessionId, "runs"), _redis.Key(sessionId, "lb")], args).ConfigureAwait(false))!;
        var status = (long)reply[0];
        if (status == -2)
        {
            throw new RunFencedException($"Run '{runId}' of session '{sessionId}' was ended by another node; this node may no longer write it.");
        }

        if (status == -1)
        {
            var range = ((string)reply[1]!).Split(':');
            return (long.Parse(range[0], CultureInfo.InvariantCulture), long.Parse(range[1], CultureInfo.InvariantCulture), true, false);
        }

        return ((long)reply[0], (long)reply[1], false, (long)reply[2] == 1);
    }

    private long Cutoff(long now) => now - (long)TimeSpan.FromMinutes(_options.MaxEventAgeMinutes).TotalMilliseconds;

    private sealed record Pending(byte[][] Bodies, string? RunId, long AppendedAt, long FirstSeq);
}
