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
    /// instead of hopping through the thread pool. Less CPU per relayed token, but code that blocks a thread (an agent
    /// tool, a host plugin) then stalls every socket of that event thread. Default false (opt-in); read once at start.
    /// </summary>
    public bool EventLoopIo { get; set; }

    /// <summary>
    /// Minimum thread-pool worker threads (see <c>ThreadPoolFloor</c>), so that a tool or plugin blocking a thread does
    /// not stall delivery while the pool grows. 0 (default) means four per core, at least 8; never lowers the runtime's.
    /// </summary>
    [Range(0, 32_767)]
    public int MinWorkerThreads { get; set; }

    /// <summary>The <c>retry:</c> hint sent to EventSource clients, in milliseconds. Default 2000.</summary>
    [Range(0, 600_000)]
    public int SseRetryMilliseconds { get; set; } = 2_000;
}
