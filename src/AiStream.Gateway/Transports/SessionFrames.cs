using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Transports;

/// <summary>
/// SSE framing of session events: <c>id: &lt;seq&gt;\ndata: &lt;json&gt;\n\n</c>, LF only, no <c>event:</c> line, written
/// from the bytes serialised once at append. Hand-written rather than <c>SseFormatter</c> because a watcher that is
/// behind gets its whole queue in one write and one flush, and idle watches need comment heartbeats; the formatter
/// writes (and so flushes) item by item and cannot write comments.
/// </summary>
internal static class SessionFrames
{
    public static void Write(PipeWriter writer, SessionEvent e, bool withId = true)
    {
        var span = writer.GetSpan(e.Json.Length + 40);
        var at = 0;
        if (withId)
        {
            "id: "u8.CopyTo(span);
            at = 4;
            Utf8Formatter.TryFormat(e.Seq, span[at..], out var written);
            at += written;
            span[at++] = (byte)'\n';
        }

        "data: "u8.CopyTo(span[at..]);
        at += 6;
        e.Json.CopyTo(span[at..]);
        at += e.Json.Length;
        span[at++] = (byte)'\n';
        span[at++] = (byte)'\n';
        writer.Advance(at);
    }

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
