using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Limits;

/// <summary>
/// The <c>AiStream:Limits</c> section. 0 turns a limit off. A caller is counted by its credential (the token's
/// <c>sub</c> or the API key), or by its address when it has none (authentication off).
/// </summary>
public sealed class LimitsOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Limits";

    /// <summary>
    /// Concurrent long-lived connections (SSE watches, hub connections, <c>/agui</c> streams, streamed completions) per
    /// user or key. Default 0 (off); set it when exposing the gateway.
    /// </summary>
    [Range(0, 10_000_000)]
    public int ConnectionsPerUser { get; set; }

    /// <summary>
    /// Concurrent long-lived connections per client address. Default 0 (off): behind a proxy every client shares its
    /// address unless forwarded headers are configured.
    /// </summary>
    [Range(0, 10_000_000)]
    public int ConnectionsPerIp { get; set; }

    /// <summary>
    /// Messages per second per connection: hub method calls, and per caller the HTTP publishes and presence updates
    /// (bursts of twice this are allowed). Default 100.
    /// </summary>
    [Range(0, 1_000_000)]
    public double MessagesPerSecond { get; set; } = 100;

    /// <summary>
    /// Tokens per user or key per UTC day, across completions and runs; an API key's own <c>DailyTokens</c> overrides
    /// it. A request is admitted only if its prompt plus its <c>max_tokens</c> (or <see cref="DefaultMaxTokens"/>) fit
    /// in what is left. Default 0 (off).
    /// </summary>
    [Range(0, long.MaxValue)]
    public long DailyTokens { get; set; }

    /// <summary>What an answer is assumed to use when the request sets no <c>max_tokens</c>, for admission. Default 1024.</summary>
    [Range(1, 10_000_000)]
    public int DefaultMaxTokens { get; set; } = 1024;

    /// <summary>Runs started per minute per user or key (REST, hub and <c>/agui</c>). Default 0 (off).</summary>
    [Range(0, 1_000_000)]
    public int RunsPerMinute { get; set; }
}
