using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;

namespace AiStream.Gateway.Transports;

/// <summary>
/// The two SSE lines <see cref="System.Net.ServerSentEvents.SseFormatter"/> cannot write: comments (heartbeats, the
/// reason a watcher is disconnected) and a field-only <c>retry:</c> hint sent before any event.
/// </summary>
internal static class SessionFrames
{
    public static void WriteComment(PipeWriter writer, string comment)
    {
        writer.Write(": "u8);
        writer.Write(System.Text.Encoding.UTF8.GetBytes(comment.Replace('\n', ' ').Replace('\r', ' ')));
        writer.Write("\n\n"u8);
    }

    public static void WriteRetry(PipeWriter writer, int milliseconds)
    {
        writer.Write("retry: "u8);
        var span = writer.GetSpan(16);
        Utf8Formatter.TryFormat(milliseconds, span, out var written);
        writer.Advance(written);
        writer.Write("\n\n"u8);
    }
}
