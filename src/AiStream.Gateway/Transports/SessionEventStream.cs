using System.Buffers;
using System.IO.Pipelines;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Writes a subscriber's session events as Server-Sent Events with <see cref="SseFormatter"/>: <c>id: &lt;seq&gt;</c> and
/// <c>data: &lt;json&gt;</c>, no <c>event:</c> line, the JSON bytes serialised once at append. The formatter flushes after
/// every event; this stream defers those flushes so that a watcher that is behind gets its whole queue in one write
/// and one flush, made when the stream is about to wait for more. Idle heartbeats are SSE comments, which the formatter
/// cannot write, so they go straight to the pipe between events.
/// </summary>
internal static class SessionEventStream
{
    public static async Task WriteAsync(
        PipeWriter writer,
        IReadOnlyList<SessionEvent> first,
        Subscriber subscriber,
        Func<SessionEvent, SessionEvent>? project,
        Func<SessionEvent, bool>? isLast,
        CancellationToken cancellationToken)
    {
        var destination = new DeferredFlushStream(writer);
        await SseFormatter.WriteAsync(
            Events(writer, first, subscriber, project, isLast, cancellationToken),
            destination,
            static (item, buffer) => buffer.Write(item.Data.Json),
            cancellationToken).ConfigureAwait(false);
    }

    private static async IAsyncEnumerable<SseItem<SessionEvent>> Events(
        PipeWriter writer,
        IReadOnlyList<SessionEvent> first,
        Subscriber subscriber,
        Func<SessionEvent, SessionEvent>? project,
        Func<SessionEvent, bool>? isLast,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        foreach (var e in first)
        {
            yield return Item(project?.Invoke(e) ?? e);
        }

        await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        var batch = new List<SessionEvent>(64);
        while (true)
        {
            var (open, heartbeat) = await subscriber.DrainAsync(batch).ConfigureAwait(false);
            if (!open)
            {
                yield break;
            }

            if (heartbeat && batch.Count == 0)
            {
                SessionFrames.WriteComment(writer, "heartbeat");
            }

            foreach (var e in batch)
            {
                // Resumed here only after the formatter wrote the event yielded before.
                yield return Item(project?.Invoke(e) ?? e);
                if (isLast?.Invoke(e) == true)
                {
                    await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                    yield break;
                }
            }

            batch.Clear();
            var flushed = await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            if (flushed.IsCompleted || flushed.IsCanceled)
            {
                yield break;
            }
        }
    }

    private static SseItem<SessionEvent> Item(SessionEvent e) => new(e) { EventId = e.SeqText };

    /// <summary>A write-only stream onto the response pipe whose flushes are left to <see cref="Events"/>.</summary>
    private sealed class DeferredFlushStream(PipeWriter writer) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => writer.Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer) => writer.Write(buffer);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            writer.Write(buffer.AsSpan(offset, count));
            return Task.CompletedTask;
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            writer.Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
    }
}
