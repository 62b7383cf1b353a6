using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Completions;

/// <summary>The <c>AiStream:Completions</c> section: behaviour of <c>/v1/chat/completions</c>.</summary>
public sealed class CompletionsOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Completions";

    /// <summary>
    /// How long to wait for the first token before committing to a 200 and sending SSE comment heartbeats, in seconds.
    /// Until then a failure still gets a proper status code. Default 3.
    /// </summary>
    [Range(0.1, 300)]
    public double HeartbeatDelaySeconds { get; set; } = 3;

    /// <summary>Interval between heartbeats while waiting for the first token, in seconds. Default 5.</summary>
    [Range(0.1, 300)]
    public double HeartbeatIntervalSeconds { get; set; } = 5;

    /// <summary>Largest accepted request body, in bytes. Default 16 MiB (room for inline images).</summary>
    [Range(1024, 1L << 30)]
    public long MaxRequestBodyBytes { get; set; } = 16 * 1024 * 1024;
}
