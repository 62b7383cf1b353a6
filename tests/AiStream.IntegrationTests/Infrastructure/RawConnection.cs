using System.Net;
using System.Net.Sockets;
using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>A plain TCP connection to write exact request bytes and read the response head.</summary>
internal sealed class RawConnection : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly TcpClient _client;

    private RawConnection(TcpClient client)
    {
        _client = client;
        Body = client.GetStream();
    }

    public Stream Body { get; }

    /// <summary>Connects; a small <paramref name="receiveBufferSize"/> makes a client that stops reading stall the server sooner.</summary>
    public static async Task<RawConnection> OpenAsync(int port, int? receiveBufferSize = null)
    {
        var client = new TcpClient();
        if (receiveBufferSize is { } size)
        {
            client.ReceiveBufferSize = size;
        }

        await client.ConnectAsync(IPAddress.Loopback, port);
        return new RawConnection(client);
    }

    public Task SendAsync(string text) => Body.WriteAsync(Encoding.ASCII.GetBytes(text)).AsTask();

    /// <summary>Reads byte by byte up to the blank line, so the body stays unread in the stream.</summary>
    public async Task<string> ReadHeadAsync()
    {
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await Body.ReadAsync(one).AsTask().WaitAsync(Patience) == 0)
            {
                throw new Xunit.Sdk.XunitException("connection closed in the response head: " + head);
            }

            head.Append((char)one[0]);
        }

        return head.ToString();
    }

    /// <summary>Reads a chunked body to its end.</summary>
    public async Task<string> ReadChunkedBodyAsync()
    {
        var body = new StringBuilder();
        using var reader = new StreamReader(Body, Encoding.UTF8, false, 1024, leaveOpen: true);
        while (await reader.ReadLineAsync().WaitAsync(Patience) is { } sizeLine)
        {
            var size = Convert.ToInt32(sizeLine.Trim(), 16);
            if (size == 0)
            {
                break;
            }

            var chunk = new char[size];
            var read = 0;
            while (read < size)
            {
                read += await reader.ReadAsync(chunk.AsMemory(read)).AsTask().WaitAsync(Patience);
            }

            body.Append(chunk);
            await reader.ReadLineAsync();
        }

        return body.ToString();
    }

    public void Dispose() => _client.Dispose();
}
