using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Turns on TCP keep-alive for every connection Kestrel accepts, by setting it on the listening sockets (Linux hands
/// the options on to accepted sockets). Long-lived SSE and WebSocket watchers to a peer that silently disappeared are
/// then closed by the kernel, which ends their presence.
/// </summary>
internal static class TcpKeepAlive
{
    /// <summary>Probes after idle, every 5 s, 3 times.</summary>
    public static void Apply(SocketTransportOptions options, int idleSeconds)
    {
        if (idleSeconds <= 0)
        {
            return;
        }

        options.CreateBoundListenSocket = endpoint =>
        {
            var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
            if (socket.ProtocolType == ProtocolType.Tcp)
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, idleSeconds);
                socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 5);
                socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
            }

            return socket;
        };
    }
}
