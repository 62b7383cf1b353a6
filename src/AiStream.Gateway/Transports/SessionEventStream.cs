using System.Buffers;
using System.IO.Pipelines;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Writes a subscriber's session events as Server-Sent Events: <c>id: &lt;seq&gt;</c> and <c>data: &lt;json&gt;</c>, no
/// <c>event:</c> line. Each event's frame is built once (<see cref="SessionEvent.SseFrame"/>) and the same bytes are
/// copied to every watcher's response pipe. This replaces <see cref="System.Net.ServerSentEvents.SseFormatter"/> here
/// on purpose: the formatter formats every item per writer (and flushes per item), which with thousands of watchers
/// of one session is the same work thousands of times per token. A watcher that is behind gets its whole queue in
/// one write and one flush. Idle heartbeats are SSE comments between events.
/// </summary>
internal static class SessionEventStream
{
    public static Task WriteAsync(
        PipeWriter writer,
        IReadOnlyList<SessionEvent> first,
        Subscriber subscriber,
        Func<SessionEvent, SessionEvent>? project,
        Func<SessionEvent, bool>? isLast,
        CancellationToken cancellationToken) =>
        WriteAsync(writer, first, subscriber, (w, e) =>
        {
            w.Write((project?.Invoke(e) ?? e).SseFrame);
            return isLast?.Invoke(e) == true;
        }, cancellationToken);

    /// <summary>
    /// Writes <paramref name="first"/> and then the subscriber's events with <paramref name="write"/> (which frames an
    /// event its own way, and answers true for the last one), flushing once per drained batch, with heartbeat comments
    /// while idle. Returns after the last event, or when the subscriber or the response is closed.
    /// </summary>
    public static async Task WriteAsync(
        PipeWriter writer,
        IReadOnlyList<SessionEvent> first,
        Subscriber subscriber,
        Func<PipeWriter, SessionEvent, bool> write,
        CancellationToken cancellationToken)
    {
        foreach (var e in first)
        {
            if (write(writer, e))
            {
                await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
        }

        first = []; // written: this frame lives as long as the watch and must not hold the catch-up events
        await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        var batch = new List<SessionEvent>(); // grows to the largest drain; an idle watcher holds none
        while (true)
        {
            // Subscriber.TryDrain and WaitAsync rather than DrainAsync: waiting then allocates nothing per event.
            var drained = subscriber.TryDrain(batch);
            while (drained is null)
            {
                await subscriber.WaitAsync().ConfigureAwait(false);
                drained = subscriber.TryDrain(batch);
            }

            if (!drained.Value.Open)
            {
                return;
            }

            if (drained.Value.Heartbeat && batch.Count == 0)
            {
                SessionFrames.WriteComment(writer, "heartbeat");
            }

            var last = false;
            foreach (var e in batch)
            {
                if (write(writer, e))
                {
                    last = true;
                    break;
                }
            }

            batch.Clear();
            var flushed = await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (last || flushed.IsCompleted || flushed.IsCanceled)
            {
                return;
            }
        }
    }

    /// <summary>Writes <paramref name="events"/> (catch-up events) without flushing.</summary>
    public static void WriteAll(PipeWriter writer, IReadOnlyList<SessionEvent> events, Func<SessionEvent, SessionEvent>? project = null)
    {
        foreach (var e in events)
        {
            writer.Write((project?.Invoke(e) ?? e).SseFrame);
        }
    }

    /// <summary>
    /// Writes a drained batch, or a heartbeat comment when one is due and the batch is empty, without flushing, and
    /// clears the batch. True when an event <paramref name="isLast"/> accepts was written (what follows it is not).
    /// </summary>
    public static bool WriteBatch(PipeWriter writer, List<SessionEvent> batch, bool heartbeat, Func<SessionEvent, SessionEvent>? project = null, Func<SessionEvent, bool>? isLast = null)
    {
        if (heartbeat && batch.Count == 0)
        {
            SessionFrames.WriteComment(writer, "heartbeat");
        }

        var last = false;
        foreach (var e in batch)
        {
            writer.Write((project?.Invoke(e) ?? e).SseFrame);
            if (isLast?.Invoke(e) == true)
            {
                last = true;
                break;
            }
        }

        batch.Clear();
        return last;
    }
}
