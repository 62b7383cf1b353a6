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

/// <summary>Keeping mirrors in step: published batches applied in position order, gaps filled from the stream, resets when Redis lost what a mirror needs.</summary>
internal sealed partial class RedisSessionStore
{
    private async Task ReadChannelAsync(Mirror mirror, ChannelMessageQueue queue)
    {
        try
        {
            while (true)
            {
                var message = await queue.ReadAsync().ConfigureAwait(false);
                byte[] payload = message.Message!;
                try
                {
                    await DeliverAsync(mirror, payload).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException and not ChannelClosedException)
                {
                    Log.DeliveryFailed(_logger, mirror.SessionId, ex);
                }
            }
        }
        catch (Exception ex) when (ex is ChannelClosedException or OperationCanceledException)
        {
            // Unsubscribed: the mirror was forgotten.
        }
    }

    /// <summary>Delivers a published batch in position order, filling any gap from the stream first.</summary>
    private async Task DeliverAsync(Mirror mirror, byte[] payload)
    {
        // The header alone says whether the batch is new: this node's own writes come back here too, and are dropped
        // without copying or parsing their events.
        var (first, runId, appendedAt, count, bodiesAt) = RedisSessionProtocol.ReadHeader(payload);
        var last = first + count - 1;
        if (last <= mirror.Log.Head)
        {
            return; // already here (this node wrote it, or a gap fill fetched it)
        }

        await mirror.Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (last <= mirror.Log.Head || !mirror.Loaded)
            {
                return;
            }

            if (mirror.BufferedCount > 0)
            {
                // Someone else wrote while this node could not: the flush reconciles (and resets watchers if needed).
                mirror.Conflict = true;
                return;
            }

            if (first > mirror.Log.Head + 1 && !await FillAsync(mirror, first - 1).ConfigureAwait(false))
            {
                return;
            }

            var bodies = RedisSessionProtocol.ReadBodies(payload, bodiesAt);
            var events = new List<(SessionEvent, JsonObject)>(bodies.Count);
            for (var i = 0; i < bodies.Count; i++)
            {
                if (first + i > mirror.Log.Head)
                {
                    events.Add(SessionEvent.FromStored(bodies[i], first + i, runId, appendedAt));
                }
            }

            mirror.Log.ApplyStored(events);
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>Reads the positions after the mirror's head up to <paramref name="to"/> from the stream. Gate held.</summary>
    private async Task<bool> FillAsync(Mirror mirror, long to)
    {
        var from = mirror.Log.Head + 1;
        var entries = await _redis.Database.StreamRangeAsync(_redis.Key(mirror.SessionId, "log"), $"{from}-0", to == long.MaxValue ? "+" : $"{to}-0").ConfigureAwait(false);
        if (entries.Length == 0 && to == long.MaxValue)
        {
            return true;
        }

        if (entries.Length == 0 || RedisSessionProtocol.SeqOf(entries[0].Id) != from)
        {
            // The stream no longer has them (trimmed, or Redis lost its data): never skip silently.
            await ResetAsync(mirror, "gap", $"Events after position {from - 1} are no longer in the shared log.").ConfigureAwait(false);
            return false;
        }

        mirror.Log.ApplyStored(entries.Select(RedisSessionProtocol.Parse).ToList());
        return true;
    }

    /// <summary>Replaces the mirror with Redis's state; its watchers get a gap notice and a fresh snapshot. Gate held.</summary>
    private async Task ResetAsync(Mirror mirror, string reason, string message)
    {
        var fresh = await LoadAsync(mirror.SessionId, mirror.Log.Head).ConfigureAwait(false);
        Log.Reset(_logger, mirror.SessionId, reason, mirror.Log.Head, fresh.Head);
        fresh.TakeOver(mirror.Log, AgUi.Event(AgUi.Custom, ("name", "stream.gap"), ("value", new JsonObject
        {
            ["reason"] = reason,
            ["message"] = message,
            ["resumeAfter"] = fresh.Head,
        })));
        mirror.Log = fresh;
        mirror.CheckpointSeq = 0;
    }

    private async Task CatchUpAsync(Mirror mirror, CancellationToken cancellationToken)
    {
        if (!mirror.Loaded || mirror.BufferedCount > 0)
        {
            return;
        }

        var head = (long?)await _redis.Database.StringGetAsync(_redis.Key(mirror.SessionId, "seq")).ConfigureAwait(false) ?? 0;
        if (head <= mirror.Log.Head)
        {
            return;
        }

        await mirror.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (head > mirror.Log.Head && mirror.BufferedCount == 0)
            {
                await FillAsync(mirror, long.MaxValue).ConfigureAwait(false);
            }
        }
        finally
        {
            mirror.Gate.Release();
        }
    }

    /// <summary>
    /// After a reconnect: if Redis came back without its data, put back what this node knows (each session's position
    /// and a checkpoint of its state), then write buffered events and pick up what was missed.
    /// </summary>
    private async Task CatchUpAllAsync(CancellationToken cancellationToken)
    {
        foreach (var mirror in _mirrors.Values)
        {
            try
            {
                if (mirror.BufferedCount > 0)
                {
                    await FlushAsync(mirror, cancellationToken).ConfigureAwait(false);
                }
                else if (mirror.Loaded && mirror.Log.Head > 0)
                {
                    var raised = (long)await _redis.Database.ScriptEvaluateAsync(RedisScripts.RaiseFloor, [_redis.Key(mirror.SessionId, "seq")],
                        [mirror.Log.Head, (long)KeyTtl.TotalMilliseconds]).ConfigureAwait(false);
                    if (raised == 1)
                    {
                        Log.Repaired(_logger, mirror.SessionId, mirror.Log.Head);
                        mirror.CheckpointSeq = 0;
                        await CheckpointAsync(mirror, _time.GetUtcNow(), force: true).ConfigureAwait(false);
                    }
                }

                await CatchUpAsync(mirror, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsRedisFailure(ex))
            {
                return;
            }
        }
    }
}
