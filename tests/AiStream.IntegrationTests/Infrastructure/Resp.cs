using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>
/// Just enough of the Redis protocol (RESP2) for fixtures and assertions: one command on a fresh loopback connection,
/// the reply returned as its raw wire text (<c>+OK\r\n</c>, <c>$1\r\nv\r\n</c>, <c>-MOVED 866 127.0.0.1:7001\r\n</c>),
/// so the fixtures depend on no Redis client library.
/// </summary>
internal static class Resp
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>Sends one command as a RESP array and returns the whole reply (nested arrays included) as raw text.</summary>
    public static async Task<string> CommandAsync(int port, IReadOnlyList<string> args)
    {
        ArgumentOutOfRangeException.ThrowIfZero(args.Count);
        using var timeout = new CancellationTokenSource(Timeout);
        using var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encode(args), timeout.Token);
        var reader = new ReplyReader(stream);
        await reader.ReadReplyAsync(timeout.Token);
        return reader.Raw;
    }

    /// <summary>True when a server on <paramref name="port"/> answers an inline <c>PING</c> with <c>+PONG</c> (not while it is still loading).</summary>
    public static async Task<bool> PingAsync(int port)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            using var client = new TcpClient { NoDelay = true };
            await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
            var stream = client.GetStream();
            await stream.WriteAsync("PING\r\n"u8.ToArray(), timeout.Token);
            var reader = new ReplyReader(stream);
            await reader.ReadReplyAsync(timeout.Token);
            return reader.Raw == "+PONG\r\n";
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or InvalidDataException)
        {
            return false;
        }
    }

    private static byte[] Encode(IReadOnlyList<string> args)
    {
        using var buffer = new MemoryStream();
        void Write(string text) => buffer.Write(Encoding.UTF8.GetBytes(text));
        Write(string.Create(CultureInfo.InvariantCulture, $"*{args.Count}\r\n"));
        foreach (var arg in args)
        {
            var bytes = Encoding.UTF8.GetBytes(arg);
            Write(string.Create(CultureInfo.InvariantCulture, $"${bytes.Length}\r\n"));
            buffer.Write(bytes);
            Write("\r\n");
        }

        return buffer.ToArray();
    }

    /// <summary>Reads exactly one reply, keeping every byte it read.</summary>
    private sealed class ReplyReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[16 * 1024];
        private readonly ArrayBufferWriter<byte> _raw = new();
        private int _start;
        private int _end;

        public string Raw => Encoding.UTF8.GetString(_raw.WrittenSpan);

        public async Task ReadReplyAsync(CancellationToken cancellationToken)
        {
            var line = await ReadLineAsync(cancellationToken);
            if (line.Length == 0)
            {
                throw new InvalidDataException("Empty RESP line");
            }

            switch (line[0])
            {
                case '+' or '-' or ':':
                    return;
                case '$':
                    var length = int.Parse(line.AsSpan(1), CultureInfo.InvariantCulture);
                    if (length >= 0)
                    {
                        await ReadExactlyAsync(length + 2, cancellationToken);
                    }

                    return;
                case '*':
                    var count = int.Parse(line.AsSpan(1), CultureInfo.InvariantCulture);
                    for (var i = 0; i < count; i++)
                    {
                        await ReadReplyAsync(cancellationToken);
                    }

                    return;
                default:
                    throw new InvalidDataException("Unexpected RESP line: " + line);
            }
        }

        private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
        {
            var lineStart = _raw.WrittenCount;
            while (true)
            {
                if (_start == _end)
                {
                    await FillAsync(cancellationToken);
                }

                var b = _buffer[_start++];
                _raw.Write([b]);
                var line = _raw.WrittenSpan[lineStart..];
                if (b == '\n' && line.Length >= 2 && line[^2] == '\r')
                {
                    return Encoding.UTF8.GetString(line[..^2]);
                }
            }
        }

        private async Task ReadExactlyAsync(int count, CancellationToken cancellationToken)
        {
            while (count > 0)
            {
                if (_start == _end)
                {
                    await FillAsync(cancellationToken);
                }

                var take = Math.Min(count, _end - _start);
                _raw.Write(_buffer.AsSpan(_start, take));
                _start += take;
                count -= take;
            }
        }

        private async Task FillAsync(CancellationToken cancellationToken)
        {
            _start = 0;
            _end = await stream.ReadAsync(_buffer, cancellationToken);
            if (_end == 0)
            {
                throw new IOException("Redis closed the connection before the reply ended");
            }
        }
    }
}
