using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Transports;

/// <summary>The <c>AiStream:Transports</c> section: SSE and SignalR delivery of session events.</summary>
public sealed class TransportsOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Transports";

    /// <summary>Interval of SSE comment heartbeats on an idle watch, in seconds. Default 15.</summary>
    [Range(0.1, 3600)]
    public double SseHeartbeatSeconds { get; set; } = 15;

    /// <summary>
    /// TCP keep-alive idle time on accepted connections, in seconds; 0 turns it off. A watcher that vanished without a
    /// FIN or RST (a laptop closed, a network gone) is then found dead after about idle + 3 × 5 s, and its presence
    /// ends, instead of lingering until a write times out minutes later. Default 15.
    /// </summary>
    [Range(0, 7200)]
    public int TcpKeepAliveSeconds { get; set; } = 15;

    /// <summary>
    /// Event-loop socket I/O (see <c>EventLoopIo</c>): socket continuations and response sends run on the I/O threads
    /// instead of hopping through the thread pool. Default true; read once at start.
    /// </summary>
    public bool EventLoopIo { get; set; } = true;

    /// <summary>
    /// Serve plain HTTP/1.1 SSE watches at the connection level (see <c>LeanConnections</c>): about half the
    /// memory per idle watcher, same events. Off only when <c>AllowedHosts</c> restricts hosts. Default true; read at start.
    /// </summary>
    public bool LeanSseConnections { get; set; } = true;

    /// <summary>
    /// Serve SignalR hub connections that skip negotiation (WebSockets) at the connection level (see
    /// <c>LeanConnections</c>): SignalR's own hub handler on a WebSocket without an HTTP request held open. Off only
    /// when <c>AllowedHosts</c> restricts hosts. Default true; read at start.
    /// </summary>
    public bool LeanHubConnections { get; set; } = true;

    /// <summary>The <c>retry:</c> hint sent to EventSource clients, in milliseconds. Default 2000.</summary>
    [Range(0, 600_000)]
    public int SseRetryMilliseconds { get; set; } = 2_000;
}
