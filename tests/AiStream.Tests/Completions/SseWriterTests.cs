using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using AiStream.Gateway.Completions;

namespace AiStream.Tests.Completions;

public sealed class SseWriterTests
{
    [Fact]
    public async Task WriteData_OneLineJson_WritesDataLineAndBlankLine()
    {
        var written = await Capture(w => SseWriter.WriteData(w, """{"id":"c1","choices":[]}"""u8));

        Assert.Equal("data: {\"id\":\"c1\",\"choices\":[]}\n\n", written);
    }

    [Fact]
    public async Task WriteData_EmptyPayload_WritesEmptyDataLine()
    {
        var written = await Capture(w => SseWriter.WriteData(w, ReadOnlySpan<byte>.Empty));

        Assert.Equal("data: \n\n", written);
    }

    [Theory]
    [InlineData("a\nb", "data: a\ndata: b\n\n")]
    [InlineData("a\r\nb", "data: a\ndata: b\n\n")]
    [InlineData("a\rb", "data: a\ndata: b\n\n")]
    [InlineData("{\n  \"x\": 1,\r\n  \"y\": 2\n}", "data: {\ndata:   \"x\": 1,\ndata:   \"y\": 2\ndata: }\n\n")]
    [InlineData("a\n\nb", "data: a\ndata: \ndata: b\n\n")]
    [InlineData("a\n", "data: a\ndata: \n\n")]
    public async Task WriteData_PayloadWithLineBreaks_WritesOneDataLinePerLine(string payload, string expected)
    {
        var written = await Capture(w => SseWriter.WriteData(w, Encoding.UTF8.GetBytes(payload)));

        Assert.Equal(expected, written);
        Assert.DoesNotContain("\r", written, StringComparison.Ordinal);
        Assert.EndsWith("\n\n", written, StringComparison.Ordinal);
        Assert.Equal(1, CountOf(written, "\n\n"));
    }

    [Fact]
    public async Task WriteData_LargeMultibytePayload_IsWrittenUnchanged()
    {
        var json = "{\"content\":\"" + string.Concat(Enumerable.Repeat("héllo wörld ✓ ", 2000)) + "\"}";

        var written = await Capture(w => SseWriter.WriteData(w, Encoding.UTF8.GetBytes(json)));

        Assert.Equal("data: " + json + "\n\n", written);
    }

    [Fact]
    public async Task WriteDone_Always_WritesDoneEvent()
    {
        var written = await Capture(SseWriter.WriteDone);

        Assert.Equal("data: [DONE]\n\n", written);
    }

    [Fact]
    public async Task WriteHeartbeat_Always_WritesCommentLine()
    {
        var written = await Capture(SseWriter.WriteHeartbeat);

        // One comment line (ignored by SSE parsers), then the blank line that ends the event.
        Assert.Matches("^:[^\r\n]*\n\n$", written);
        Assert.DoesNotContain("data:", written, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Write_Sequence_KeepsOrderAndFraming()
    {
        var written = await Capture(w =>
        {
            SseWriter.WriteHeartbeat(w);
            SseWriter.WriteData(w, """{"n":1}"""u8);
            SseWriter.WriteData(w, """{"n":2}"""u8);
            SseWriter.WriteDone(w);
        });

        var events = written.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, events.Length);
        Assert.StartsWith(":", events[0], StringComparison.Ordinal);
        Assert.Equal(["data: {\"n\":1}", "data: {\"n\":2}", "data: [DONE]"], events[1..]);
    }

    private delegate void WriteAction(PipeWriter writer);

    private static async Task<string> Capture(WriteAction write)
    {
        var pipe = new Pipe();
        write(pipe.Writer);
        await pipe.Writer.FlushAsync();
        await pipe.Writer.CompleteAsync();

        var bytes = new List<byte>();
        while (true)
        {
            var result = await pipe.Reader.ReadAsync();
            bytes.AddRange(result.Buffer.ToArray());
            pipe.Reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await pipe.Reader.CompleteAsync();
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static int CountOf(string text, string value)
    {
        var count = 0;
        for (var i = text.IndexOf(value, StringComparison.Ordinal); i >= 0; i = text.IndexOf(value, i + value.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
