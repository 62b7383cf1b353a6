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
    /// <summary>
    /// Writes <paramref name="first"/> and then the subscriber's events with <paramref name="write"/> (which frames an
    /// event its own way, and answers true for the last one), flushing once per drained batch, with heartbeat comments
    /// while idle. Returns after the last event, or when the subscriber or the response is closed. For a stream of its
    /// own framing (AG-UI, the AI SDK); the SSE watch writes the shared frames with <see cref="WriteBatch"/>.
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

            WriteHeartbeat(writer, batch, drained.Value.Heartbeat);
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
    public static void WriteAll(PipeWriter writer, IReadOnlyList<SessionEvent> events)
    {
        foreach (var e in events)
        {
            writer.Write(e.SseFrame);
        }
    }

    /// <summary>
    /// Writes a drained batch as the shared SSE frames, or a heartbeat comment when one is due and the batch is empty,
    /// without flushing, and clears the batch.
    /// </summary>
    public static void WriteBatch(PipeWriter writer, List<SessionEvent> batch, bool heartbeat)
    {
        WriteHeartbeat(writer, batch, heartbeat);
        foreach (var e in batch)
        {
            writer.Write(e.SseFrame);
        }

        batch.Clear();
    }

    private static void WriteHeartbeat(PipeWriter writer, List<SessionEvent> batch, bool heartbeat)
    {
        if (heartbeat && batch.Count == 0)
        {
            SessionFrames.WriteComment(writer, "heartbeat");
        }
    }
}
