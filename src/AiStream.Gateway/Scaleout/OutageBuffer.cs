using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Scaleout;

/// <summary>The outage buffer: while Redis is away, events the gateway produces get their positions here and reach local watchers at once; they are written, in order, when it is back.</summary>
internal sealed class OutageBuffer(RedisSessionCommands commands, SessionMirrors mirrors, StreamSync sync, ScaleoutOptions scaleout, TimeProvider time, ILogger logger)
{
    /// <summary>
    /// Appends a batch Redis could not take: the next positions are taken here, local watchers get the events now,
    /// and they are written later in order. Gate held.
    /// </summary>
    public AppendResult Append(SessionMirror mirror, IReadOnlyList<JsonObject> objects, byte[][] bodies, string? runId, long now)
    {
        if (mirror.BufferedCount + bodies.Length > scaleout.MaxBufferedEvents)
        {
            throw new SessionStoreUnavailableException($"Redis has been unreachable for too long: more than {scaleout.MaxBufferedEvents} events are buffered for this session.");
        }

        var firstLocal = mirror.Log.Head + 1;
        var pending = RedisSessionProtocol.Stored(objects, bodies, runId, now, firstLocal);
        mirror.Buffer(new BufferedAppend(bodies, runId, now, firstLocal));
        mirror.Log.ApplyStored(pending);
        mirror.Touch();
        return new AppendResult(pending.Select(e => e.Event).ToList(), false, RedisSessionProtocol.Range(firstLocal, firstLocal + bodies.Length - 1));
    }

    /// <summary>
    /// Writes this node's buffered events of a session, if it holds any, before another writer of this node (presence)
    /// appends to the same log: otherwise that append would take the positions the buffered events were delivered with.
    /// Throws the Redis failure when Redis is still away.
    /// </summary>
    public async Task FlushBufferedAsync(string sessionId, CancellationToken cancellationToken)
    {
        if (mirrors.TryGet(sessionId, out var mirror) && mirror.BufferedCount > 0)
        {
            await FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Writes events buffered while Redis was away, in order, at the positions they were delivered with. If Redis moved
    /// on meanwhile (another node wrote), they are written after what is there and this node's watchers are reset.
    /// </summary>
    public async Task FlushAsync(SessionMirror mirror, CancellationToken cancellationToken)
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
                    (first, _, _, conflict) = await commands.AppendAsync(mirror.SessionId, pending.Bodies, pending.RunId, null, pending.AppendedAt,
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
                    if (await commands.AlreadyWrittenAsync(mirror.SessionId, pending).ConfigureAwait(false))
                    {
                        mirror.DropBuffered();
                        continue; // an earlier attempt got through but its answer was lost
                    }

                    moved = true;
                    continue;
                }

                mirror.DropBuffered();
                SessionStoreLog.Flushed(logger, mirror.SessionId, pending.Bodies.Length, first);
            }

            mirror.Conflict = false;
            if (moved)
            {
                await sync.ResetAsync(mirror, "diverged", "Events were written elsewhere while this node could not reach Redis; positions were reassigned.").ConfigureAwait(false);
            }
            else
            {
                mirror.Loaded = true;
                await commands.CheckpointAsync(mirror, time.GetUtcNow(), force: true).ConfigureAwait(false);
            }
        }
        finally
        {
            mirror.Gate.Release();
        }
    }
}
