using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>Keeps mirrors in step: published batches applied in position order, gaps filled from the stream, resets when Redis lost what a mirror needs.</summary>
internal sealed class StreamSync(RedisSessionCommands commands, ILogger logger)
{
    /// <summary>Delivers what the session's channel brings, in order, until the mirror unsubscribes.</summary>
    public async Task ReadChannelAsync(SessionMirror mirror, ChannelMessageQueue queue)
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
                    SessionStoreLog.DeliveryFailed(logger, mirror.SessionId, ex);
                }
            }
        }
        catch (Exception ex) when (ex is ChannelClosedException or OperationCanceledException)
        {
            // Unsubscribed: the mirror was forgotten.
        }
    }

    /// <summary>Delivers a published batch in position order, filling any gap from the stream first.</summary>
    private async Task DeliverAsync(SessionMirror mirror, byte[] payload)
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
    public async Task<bool> FillAsync(SessionMirror mirror, long to)
    {
        var from = mirror.Log.Head + 1;
        var entries = await commands.RangeAsync(mirror.SessionId, from, to).ConfigureAwait(false);
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
    public async Task ResetAsync(SessionMirror mirror, string reason, string message)
    {
        var fresh = await commands.LoadAsync(mirror.SessionId, mirror.Log.Head).ConfigureAwait(false);
        SessionStoreLog.Reset(logger, mirror.SessionId, reason, mirror.Log.Head, fresh.Head);
        fresh.TakeOver(mirror.Log, AgUi.Event(AgUi.Custom, ("name", "stream.gap"), ("value", new JsonObject
        {
            ["reason"] = reason,
            ["message"] = message,
            ["resumeAfter"] = fresh.Head,
        })));
        mirror.Log = fresh;
        mirror.CheckpointSeq = 0;
    }

    /// <summary>Picks up what the mirror missed: reads the shared head and fills up to it from the stream.</summary>
    public async Task CatchUpAsync(SessionMirror mirror, CancellationToken cancellationToken)
    {
        if (!mirror.Loaded || mirror.BufferedCount > 0)
        {
            return;
        }

        var head = await commands.HeadAsync(mirror.SessionId).ConfigureAwait(false);
        await CatchUpToAsync(mirror, head, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Fills the mirror from the stream when Redis's head <paramref name="head"/> is past it.</summary>
    public async Task CatchUpToAsync(SessionMirror mirror, long head, CancellationToken cancellationToken)
    {
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
}
