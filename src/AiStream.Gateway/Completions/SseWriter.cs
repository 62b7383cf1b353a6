using System.Buffers;
using System.IO.Pipelines;

namespace AiStream.Gateway.Completions;

/// <summary>
/// Writes OpenAI's SSE framing straight onto the response pipe: <c>data: {json}\n\n</c>, LF only, then
/// <c>data: [DONE]</c>. Hand-written rather than <c>SseFormatter</c> because the relay forwards upstream payload
/// bytes untouched and must interleave comment heartbeats, neither of which the formatter offers.
/// </summary>
internal static class SseWriter
{
    private static ReadOnlySpan<byte> DataPrefix => "data: "u8;

    private static ReadOnlySpan<byte> Done => "data: [DONE]\n\n"u8;

    private static ReadOnlySpan<byte> Heartbeat => ": keep-alive\n\n"u8;

    public static void WriteData(PipeWriter writer, ReadOnlySpan<byte> payload)
    {
        // A payload with line breaks (rare; JSON from upstreams is one line) becomes several data: lines.
        while (true)
        {
            var newline = payload.IndexOfAny((byte)'\n', (byte)'\r');
            var line = newline < 0 ? payload : payload[..newline];
            var length = DataPrefix.Length + line.Length + (newline < 0 ? 2 : 1);
            var span = writer.GetSpan(length);
            DataPrefix.CopyTo(span);
            line.CopyTo(span[DataPrefix.Length..]);
            span[DataPrefix.Length + line.Length] = (byte)'\n';
            if (newline < 0)
            {
                span[length - 1] = (byte)'\n';
                writer.Advance(length);
                return;
            }

            writer.Advance(length);
            var skip = payload[newline] == '\r' && newline + 1 < payload.Length && payload[newline + 1] == '\n' ? 2 : 1;
            payload = payload[(newline + skip)..];
        }
    }

    public static void WriteDone(PipeWriter writer) => writer.Write(Done);

    public static void WriteHeartbeat(PipeWriter writer) => writer.Write(Heartbeat);
}
