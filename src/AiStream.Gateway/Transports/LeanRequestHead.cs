using System.Buffers;
using System.Text;

namespace AiStream.Gateway.Transports;

/// <summary>
/// The request head of one of the two requests <see cref="LeanConnections"/> serves, read strictly: a plain HTTP/1.1
/// SSE watch, <c>GET /api/sessions/{id}/events</c>, or a WebSocket upgrade of the SignalR hub with negotiation
/// skipped, <c>GET /hubs/sessions</c>. Hand-written because Kestrel's parser is internal to it; it only has to
/// recognise these two, so anything it does not fully understand (another path or method, HTTP/1.0, a percent-encoded
/// path, a body, <c>Expect</c>, an <c>Upgrade</c> on a watch, a hub request that is not a plain version-13 WebSocket
/// upgrade or that names a negotiated connection, folded or non-ASCII header lines, a head larger than
/// <see cref="MaxLength"/>) is <see cref="ParseStatus.NotOurs"/> and goes to Kestrel unchanged.
/// </summary>
internal sealed class LeanRequestHead
{
    /// <summary>Longest head read here; a larger one goes to Kestrel, whose own limits apply.</summary>
    public const int MaxLength = 8 * 1024;

    private const int MaxHeaders = 64;
    private static ReadOnlySpan<byte> Prefix => "GET /api/sessions/"u8;
    private static ReadOnlySpan<byte> HubPrefix => "GET /hubs/sessions"u8;
    private static ReadOnlySpan<byte> Suffix => "/events"u8;
    private static ReadOnlySpan<byte> Version => " HTTP/1.1\r\n"u8;

    /// <summary>Outcome of <see cref="TryParse"/>.</summary>
    public enum ParseStatus
    {
        /// <summary>The bytes so far start a watch or hub request whose head has not ended yet.</summary>
        Incomplete,

        /// <summary>A complete watch or hub request head.</summary>
        Parsed,

        /// <summary>Anything else: Kestrel's to handle.</summary>
        NotOurs,
    }

    /// <summary>Which request it is.</summary>
    public enum RequestKind
    {
        /// <summary><c>GET /api/sessions/{id}/events</c>.</summary>
        Watch,

        /// <summary>A WebSocket upgrade of <c>GET /hubs/sessions</c> (SignalR, negotiation skipped).</summary>
        Hub,
    }

    /// <summary>Which request it is.</summary>
    public RequestKind Kind { get; private init; }

    /// <summary>The session id from the path of a watch (the id pattern only, so no decoding applies); empty for the hub.</summary>
    public required string SessionId { get; init; }

    /// <summary>The <c>Sec-WebSocket-Key</c> of a hub upgrade (checked: base64 of 16 bytes).</summary>
    public string? WebSocketKey { get; private set; }

    // Null until seen, so that a value sent twice is noticed even when the first one was empty.
    private string? _lastEventId;
    private string? _after;
    private string? _clientId;
    private string? _name;
    private string? _color;

    /// <summary>The <c>Last-Event-ID</c> header, or empty.</summary>
    public string LastEventId => _lastEventId ?? "";

    /// <summary>Decoded query values (empty when absent).</summary>
    public string After => _after ?? "";

    /// <inheritdoc cref="After"/>
    public string ClientId => _clientId ?? "";

    /// <inheritdoc cref="After"/>
    public string Name => _name ?? "";

    /// <inheritdoc cref="After"/>
    public string Color => _color ?? "";

    /// <summary>The <c>aistream_cid</c> cookie, if sent.</summary>
    public string? Remembered { get; private set; }

    /// <summary>Bytes of the head, up to and including the empty line.</summary>
    public required int Length { get; init; }

    /// <summary>Reads a request head from the start of <paramref name="buffer"/>.</summary>
    public static ParseStatus TryParse(in ReadOnlySequence<byte> buffer, out LeanRequestHead? head)
    {
        head = null;
        var length = (int)Math.Min(buffer.Length, MaxLength);
        ReadOnlySpan<byte> data;
        byte[]? rented = null;
        if (buffer.IsSingleSegment || buffer.FirstSpan.Length >= length)
        {
            data = buffer.FirstSpan[..length];
        }
        else
        {
            rented = ArrayPool<byte>.Shared.Rent(length);
            buffer.Slice(0, length).CopyTo(rented);
            data = rented.AsSpan(0, length);
        }

        try
        {
            return Parse(data, buffer.Length > MaxLength, out head);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static ParseStatus Parse(ReadOnlySpan<byte> data, bool truncated, out LeanRequestHead? head)
    {
        head = null;
        RequestKind kind;
        if (data.StartsWith(Prefix))
        {
            kind = RequestKind.Watch;
        }
        else if (data.StartsWith(HubPrefix))
        {
            kind = RequestKind.Hub;
        }
        else
        {
            return Prefix.StartsWith(data) || HubPrefix.StartsWith(data) ? ParseStatus.Incomplete : ParseStatus.NotOurs;
        }

        var end = data.IndexOf("\r\n\r\n"u8);
        if (end < 0)
        {
            // Still arriving, unless it is already longer than the heads read here.
            return truncated || data.Length >= MaxLength ? ParseStatus.NotOurs : ParseStatus.Incomplete;
        }

        var lineEnd = data.IndexOf("\r\n"u8);
        var requestLine = data[..(lineEnd + 2)];
        if (!requestLine.EndsWith(Version))
        {
            return ParseStatus.NotOurs;
        }

        // "GET " + target + " HTTP/1.1\r\n"
        var target = requestLine[4..^Version.Length];
        var question = target.IndexOf((byte)'?');
        var path = question < 0 ? target : target[..question];
        var query = question < 0 ? [] : target[question..];
        if (!IsQuery(query))
        {
            return ParseStatus.NotOurs;
        }

        var sessionId = "";
        if (kind == RequestKind.Hub)
        {
            if (path.Length != HubPrefix.Length - 4)
            {
                return ParseStatus.NotOurs;
            }
        }
        else
        {
            var idBytes = path[(Prefix.Length - 4)..];
            if (!idBytes.EndsWith(Suffix))
            {
                return ParseStatus.NotOurs;
            }

            idBytes = idBytes[..^Suffix.Length];
            if (idBytes.Length is 0 or > 128 || !IsSessionId(idBytes))
            {
                return ParseStatus.NotOurs;
            }

            sessionId = Encoding.ASCII.GetString(idBytes);
        }

        var parsed = new LeanRequestHead { Kind = kind, SessionId = sessionId, Length = end + 4 };
        if (query.Length > 0 && !parsed.ReadQuery(Encoding.ASCII.GetString(query)))
        {
            return ParseStatus.NotOurs;
        }

        var hosts = 0;
        var lines = 0;
        var upgrade = default(WebSocketUpgrade);
        var rest = data[(lineEnd + 2)..(end + 2)];
        while (rest.Length > 0)
        {
            var next = rest.IndexOf("\r\n"u8);
            var line = rest[..next];
            rest = rest[(next + 2)..];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || ++lines > MaxHeaders || !IsToken(line[..colon]))
            {
                return ParseStatus.NotOurs;
            }

            var name = line[..colon];
            var value = line[(colon + 1)..].Trim(" \t"u8);
            if (!IsFieldValue(value))
            {
                return ParseStatus.NotOurs;
            }

            if (Is(name, "Transfer-Encoding"u8) || Is(name, "Expect"u8) || (Is(name, "Content-Length"u8) && !value.SequenceEqual("0"u8)))
            {
                return ParseStatus.NotOurs;
            }

            if (kind == RequestKind.Hub ? !upgrade.Read(name, value) : Is(name, "Upgrade"u8))
            {
                return ParseStatus.NotOurs;
            }

            if (Is(name, "Host"u8) && (++hosts > 1 || !IsHost(value)))
            {
                return ParseStatus.NotOurs;
            }

            if (kind == RequestKind.Watch && Is(name, "Last-Event-ID"u8))
            {
                if (parsed._lastEventId is not null)
                {
                    return ParseStatus.NotOurs;
                }

                parsed._lastEventId = Encoding.ASCII.GetString(value);
            }

            if (Is(name, "Cookie"u8) && !parsed.ReadCookie(value))
            {
                return ParseStatus.NotOurs;
            }
        }

        if (hosts != 1 || (kind == RequestKind.Hub && !upgrade.IsComplete))
        {
            return ParseStatus.NotOurs;
        }

        parsed.WebSocketKey = upgrade.Key;

        head = parsed;
        return ParseStatus.Parsed;
    }

    /// <summary>The watch's query values, decoded as ASP.NET Core decodes them; a repeated one is left to Kestrel (it would join them).</summary>
    private bool ReadQuery(string query)
    {
        foreach (var pair in new Microsoft.AspNetCore.WebUtilities.QueryStringEnumerable(query))
        {
            var name = pair.DecodeName().Span;
            if (Kind == RequestKind.Hub && name.Equals("id", StringComparison.OrdinalIgnoreCase))
            {
                // A connection token from /negotiate: that connection lives in SignalR's connection manager.
                return false;
            }

            var taken = name.Equals("after", StringComparison.OrdinalIgnoreCase) ? Take(ref _after, pair)
                : name.Equals("clientId", StringComparison.OrdinalIgnoreCase) ? Take(ref _clientId, pair)
                : name.Equals("name", StringComparison.OrdinalIgnoreCase) ? Take(ref _name, pair)
                : !name.Equals("color", StringComparison.OrdinalIgnoreCase) || Take(ref _color, pair);
            if (!taken)
            {
                return false;
            }
        }

        return true;

        static bool Take(ref string? field, Microsoft.AspNetCore.WebUtilities.QueryStringEnumerable.EncodedNameValuePair pair)
        {
            if (field is not null)
            {
                return false;
            }

            field = pair.DecodeValue().ToString();
            return true;
        }
    }

    /// <summary>
    /// Finds the <c>aistream_cid</c> cookie (names match exactly, as in ASP.NET Core). Quoted, percent-encoded or
    /// comma-separated cookie lists, and the cookie sent twice, are left to Kestrel.
    /// </summary>
    private bool ReadCookie(ReadOnlySpan<byte> header)
    {
        if (header.IndexOfAny(",\"%"u8) >= 0)
        {
            return false;
        }

        foreach (var range in header.Split((byte)';'))
        {
            var pair = header[range].Trim(" \t"u8);
            var equals = pair.IndexOf((byte)'=');
            if (equals > 0 && pair[..equals].Trim(" \t"u8).SequenceEqual("aistream_cid"u8))
            {
                if (Remembered is not null)
                {
                    return false;
                }

                Remembered = Encoding.ASCII.GetString(pair[(equals + 1)..].Trim(" \t"u8));
            }
        }

        return true;
    }

    /// <summary>
    /// The WebSocket handshake headers of a hub request (RFC 6455 4.2.1), each expected once: <c>Upgrade: websocket</c>,
    /// <c>Connection</c> listing <c>upgrade</c>, <c>Sec-WebSocket-Version: 13</c> and a key of 16 bytes. A requested
    /// subprotocol goes to Kestrel (the hub selects none); extensions are declined by not answering them, as ASP.NET
    /// Core does without compression.
    /// </summary>
    private struct WebSocketUpgrade
    {
        private bool _upgrade;
        private bool _connection;
        private bool _version;

        public string? Key { get; private set; }

        public readonly bool IsComplete => _upgrade && _connection && _version && Key is not null;

        /// <summary>Takes one header line; false when the request is not a plain upgrade.</summary>
        public bool Read(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            if (Is(name, "Upgrade"u8))
            {
                return Once(ref _upgrade) && Is(value, "websocket"u8);
            }

            if (Is(name, "Connection"u8))
            {
                if (!Once(ref _connection))
                {
                    return false;
                }

                foreach (var range in value.Split((byte)','))
                {
                    if (Is(value[range].Trim(" \t"u8), "upgrade"u8))
                    {
                        return true;
                    }
                }

                return false;
            }

            if (Is(name, "Sec-WebSocket-Version"u8))
            {
                return Once(ref _version) && value.SequenceEqual("13"u8);
            }

            if (Is(name, "Sec-WebSocket-Key"u8))
            {
                Span<byte> decoded = stackalloc byte[18];
                if (Key is not null || value.Length != 24
                    || System.Buffers.Text.Base64.DecodeFromUtf8(value, decoded, out _, out var written) != OperationStatus.Done || written != 16)
                {
                    return false;
                }

                Key = Encoding.ASCII.GetString(value);
                return true;
            }

            return !Is(name, "Sec-WebSocket-Protocol"u8);
        }

        private static bool Once(ref bool seen)
        {
            if (seen)
            {
                return false;
            }

            seen = true;
            return true;
        }
    }

    private static bool Is(ReadOnlySpan<byte> name, ReadOnlySpan<byte> expected) => Ascii.EqualsIgnoreCase(name, expected);

    // The session id pattern of SessionsEndpoints: letters, digits and . _ : -
    private static bool IsSessionId(ReadOnlySpan<byte> id)
    {
        foreach (var b in id)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'.' or (byte)'_' or (byte)':' or (byte)'-'))
            {
                return false;
            }
        }

        return true;
    }

    // Visible ASCII without '#'; percent-encoding is decoded by the query parser.
    private static bool IsQuery(ReadOnlySpan<byte> query)
    {
        foreach (var b in query)
        {
            if (b is <= 0x20 or >= 0x7F or (byte)'#')
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsToken(ReadOnlySpan<byte> name)
    {
        foreach (var b in name)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || "!#$%&'*+-.^_`|~"u8.Contains(b)))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsFieldValue(ReadOnlySpan<byte> value)
    {
        foreach (var b in value)
        {
            if (b is < 0x20 and not (byte)'\t' or >= 0x7F)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsHost(ReadOnlySpan<byte> host)
    {
        if (host.Length == 0)
        {
            return false;
        }

        foreach (var b in host)
        {
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'.' or (byte)'-' or (byte)':' or (byte)'[' or (byte)']'))
            {
                return false;
            }
        }

        return true;
    }
}
