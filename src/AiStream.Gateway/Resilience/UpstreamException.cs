namespace AiStream.Gateway.Resilience;

/// <summary>How an upstream attempt failed.</summary>
internal enum UpstreamFailureKind
{
    /// <summary>The upstream answered with a non-success status.</summary>
    Status,
    /// <summary>The connection could not be made or broke.</summary>
    Connection,
    /// <summary>No first chunk within the time-to-first-token timeout.</summary>
    TimeToFirstToken,
    /// <summary>No chunk within the idle timeout once streaming.</summary>
    Idle,
    /// <summary>The stream ended before the answer was complete.</summary>
    Truncated,
    /// <summary>The provider's circuit is open.</summary>
    CircuitOpen,
}

/// <summary>An upstream failure, classified for retry, fallback and the status the client gets.</summary>
internal sealed class UpstreamException(
    UpstreamFailureKind kind,
    string message,
    int? status = null,
    TimeSpan? retryAfter = null,
    byte[]? body = null,
    string? contentType = null,
    Exception? inner = null) : Exception(message, inner)
{
    public UpstreamFailureKind Kind { get; } = kind;

    /// <summary>Upstream HTTP status, when it answered.</summary>
    public int? Status { get; } = status;

    /// <summary>Upstream's Retry-After, when it sent one.</summary>
    public TimeSpan? RetryAfter { get; } = retryAfter;

    /// <summary>Upstream's error body, relayed to the client for client errors.</summary>
    public byte[]? Body { get; } = body;

    public string? ContentType { get; } = contentType;

    /// <summary>Worth another attempt at the same provider: 408, 409, 429, 5xx, connection errors, timeouts.</summary>
    public bool IsTransient => Kind switch
    {
        UpstreamFailureKind.Status => Status is 408 or 409 or 429 or >= 500,
        UpstreamFailureKind.CircuitOpen => false,
        _ => true,
    };

    /// <summary>
    /// The request itself is wrong (400, 404, 413, 415, 422): another attempt or model would fail the same way,
    /// so the upstream's answer goes back to the client as it is.
    /// </summary>
    public bool IsClientError => Kind == UpstreamFailureKind.Status && Status is 400 or 404 or 413 or 415 or 422;

    /// <summary>The status the client gets when every candidate failed this way.</summary>
    public int GatewayStatus => Kind is UpstreamFailureKind.TimeToFirstToken or UpstreamFailureKind.Idle ? 504 : 502;

    /// <summary>Short machine-readable code for error bodies and metrics.</summary>
    public string Code => Kind switch
    {
        UpstreamFailureKind.Status when Status == 429 => "upstream_rate_limited",
        UpstreamFailureKind.Status => "upstream_error",
        UpstreamFailureKind.Connection => "upstream_unreachable",
        UpstreamFailureKind.TimeToFirstToken => "upstream_timeout",
        UpstreamFailureKind.Idle => "upstream_idle_timeout",
        UpstreamFailureKind.Truncated => "upstream_stream_interrupted",
        UpstreamFailureKind.CircuitOpen => "upstream_circuit_open",
        _ => "upstream_error",
    };
}
