using System.Buffers;
using System.Text;
using AiStream.Gateway.Transports;
using static AiStream.Gateway.Transports.LeanRequestHead;

namespace AiStream.Tests.Transports;

public sealed class LeanRequestHeadTests
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

    private const string Upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    [Fact]
    public void HubUpgrade_IsParsed_WithTheKeyAndTheIdentityTheHubReads()
    {
        var request = "GET /hubs/sessions?clientId=u%3A1&name=Ada+L%C3%A9&color=%23f00&extra=1 HTTP/1.1\r\nHost: gw\r\nOrigin: http://gw\r\n"
            + "upgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
            + "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nCookie: aistream_cid=anon-1\r\n\r\n";
        Assert.Equal(ParseStatus.Parsed, TryParse(Sequence(request), out var head));
        Assert.Equal(RequestKind.Hub, head!.Kind);
        Assert.Equal("dGhlIHNhbXBsZSBub25jZQ==", head.WebSocketKey);
        Assert.Equal(("u:1", "Ada L\u00e9", "#f00", "anon-1"), (head.ClientId, head.Name, head.Color, head.Remembered));
        Assert.Equal("", head.SessionId);
        Assert.Equal(Encoding.UTF8.GetByteCount(request), head.Length);
    }

    [Fact]
    public void WatchIsAWatch()
    {
        Assert.Equal(ParseStatus.Parsed, TryParse(Sequence(Watch), out var head));
        Assert.Equal(RequestKind.Watch, head!.Kind);
        Assert.Null(head.WebSocketKey);
    }

    [Theory]
    [InlineData("GET /hubs/ses")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\n")]
    public void StartOfAHubUpgrade_IsIncomplete(string partial) =>
        Assert.Equal(ParseStatus.Incomplete, TryParse(Sequence(partial), out _));

    [Theory]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\n\r\n")]
    [InlineData("GET /hubs/sessions?id=tok HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /hubs/sessions?ID=tok HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /hubs/sessions/negotiate HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /hubs/sessionsX HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /Hubs/Sessions HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("POST /hubs/sessions HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.0\r\nHost: x\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\n" + Upgrade + "\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\n" + Upgrade + "Sec-WebSocket-Protocol: chat\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\n" + Upgrade + "Upgrade: websocket\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\n" + Upgrade + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\n" + Upgrade + "Content-Length: 3\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /hubs/sessions HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\nSec-WebSocket-Version: 13\r\n\r\n")]
    [InlineData("GET /hubs/sessions?clientId=a&clientId=b HTTP/1.1\r\nHost: x\r\n" + Upgrade + "\r\n")]
    public void HubRequestThatIsNotAPlainUpgrade_IsNotOurs(string request) =>
        Assert.Equal(ParseStatus.NotOurs, TryParse(Sequence(request), out _));

    [Fact]
    public void SwitchingProtocols_AnswersTheKeyAsRfc6455Says()
    {
        var head = Encoding.ASCII.GetString(LeanHubConnection.SwitchingProtocols("dGhlIHNhbXBsZSBub25jZQ==", new DateTimeOffset(2026, 11, 29, 9, 0, 0, TimeSpan.Zero)));
        Assert.Equal("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nDate: Sun, 29 Nov 2026 09:00:00 GMT\r\nUpgrade: websocket\r\n"
            + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", head);
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
