using System.Buffers;
using System.Text;
using AiStream.Gateway.Transports;
using static AiStream.Gateway.Transports.SseRequestHead;

namespace AiStream.Tests.Transports;

public sealed class SseRequestHeadTests
{
    private const string Watch = "GET /api/sessions/s-1.a:b_c/events?after=4&Name=Ada+L%C3%A9&clientId=u%3A1&other=x&color=%23f00 HTTP/1.1\r\nHost: gw:8080\r\nlast-event-id: 7\r\nCookie: a=b; AISTREAM_CID=other ; aistream_cid=anon-1\r\n\r\n";

    [Fact]
    public void Watch_IsParsed_WithTheValuesTheEndpointReads_DecodedAsAspNetCoreDoes()
    {
        Assert.Equal(ParseStatus.Parsed, TryParse(Sequence(Watch + "GET /next"), out var head));
        Assert.Equal("s-1.a:b_c", head!.SessionId);
        Assert.Equal("4", head.After);
        Assert.Equal("Ada L\u00e9", head.Name);
        Assert.Equal("u:1", head.ClientId);
        Assert.Equal("#f00", head.Color);
        Assert.Equal("7", head.LastEventId);
        Assert.Equal("anon-1", head.Remembered);
        Assert.Equal(Encoding.ASCII.GetByteCount(Watch), head.Length);
    }

    [Fact]
    public void WatchWithoutQueryOrCookie_HasEmptyValues()
    {
        Assert.Equal(ParseStatus.Parsed, TryParse(Sequence("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\n\r\n"), out var head));
        Assert.Equal(("", "", "", "", ""), (head!.After, head.ClientId, head.Name, head.Color, head.LastEventId));
        Assert.Null(head.Remembered);
    }

    [Fact]
    public void HeadSplitAcrossSegments_IsParsedTheSame()
    {
        var bytes = Encoding.ASCII.GetBytes(Watch);
        var first = new Segment(bytes.AsMemory(0, 20));
        var last = first.Append(bytes.AsMemory(20, 31)).Append(bytes.AsMemory(51));
        Assert.Equal(ParseStatus.Parsed, TryParse(new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length), out var head));
        Assert.Equal("s-1.a:b_c", head!.SessionId);
        Assert.Equal("anon-1", head.Remembered);
    }

    [Theory]
    [InlineData("G")]
    [InlineData("GET /api/ses")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\n")]
    public void StartOfAWatch_IsIncomplete(string partial) =>
        Assert.Equal(ParseStatus.Incomplete, TryParse(Sequence(partial), out _));

    [Theory]
    [InlineData("POST /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")]
    [InlineData("\u0016\u0003\u0001\u0002\u0000")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.0\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s%201/events HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events/more HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions//events HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events?a=#b HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x/y\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nX-A: caf\u00e9\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events?clientId=a&clientid=b HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\nLast-Event-ID: 2\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID:\r\nLast-Event-ID: 2\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events?clientId=&clientId=b HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events?after&after=3 HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nCookie: aistream_cid=\"q\"\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nCookie: aistream_cid=a%20b\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nCookie: a=1, aistream_cid=b\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nCookie: aistream_cid=a; aistream_cid=b\r\n\r\n")]
    [InlineData("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nCookie: aistream_cid=a\r\nCookie: aistream_cid=b\r\n\r\n")]
    public void AnythingElse_IsNotOurs(string request) =>
        Assert.Equal(ParseStatus.NotOurs, TryParse(Sequence(request), out _));

    [Fact]
    public void ContentLengthZero_IsAccepted() =>
        Assert.Equal(ParseStatus.Parsed, TryParse(Sequence("GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), out _));

    [Fact]
    public void HeadLongerThanTheLimit_IsNotOurs()
    {
        var longHead = "GET /api/sessions/s1/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + new string('a', MaxLength) + "\r\n\r\n";
        Assert.Equal(ParseStatus.NotOurs, TryParse(Sequence(longHead[..(MaxLength + 10)]), out _));
        Assert.Equal(ParseStatus.NotOurs, TryParse(Sequence(longHead), out _));
    }

    private static ReadOnlySequence<byte> Sequence(string text) => new(Encoding.Latin1.GetBytes(text));

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
