using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// The <c>AiStream:Scaleout</c> section. Scale-out is on when a Redis connection string is configured, as
/// <c>ConnectionStrings:Redis</c> or <c>AiStream:Redis</c>; without one the gateway keeps everything in memory.
/// </summary>
public sealed class ScaleoutOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Scaleout";

    /// <summary>The StackExchange.Redis connection string (one Redis, or the nodes of a Redis Cluster). Set from configuration.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>Prefix of every key and channel, so several deployments can share one Redis. Default <c>aistream:</c>.</summary>
    [RegularExpression("^[A-Za-z0-9:._-]{0,64}$")]
    public string KeyPrefix { get; set; } = "aistream:";

    /// <summary>This node's id in Redis (run ownership, watcher counts, liveness). Default: a random id per process.</summary>
    [RegularExpression("^[A-Za-z0-9._-]{1,64}$")]
    public string NodeId { get; set; } = "node-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>A node that has not renewed its liveness for this long is dead: its runs are ended. Seconds, default 15.</summary>
    [Range(2, 3600)]
    public double NodeTimeoutSeconds { get; set; } = 15;

    /// <summary>How often a node renews its liveness, refreshes watcher counts and checks for missed events. Seconds, default 1.</summary>
    [Range(0.1, 60)]
    public double MaintenanceSeconds { get; set; } = 1;

    /// <summary>A node forgets a session it neither watches nor writes after this long. Seconds, default 30.</summary>
    [Range(1, 3600)]
    public double MirrorIdleSeconds { get; set; } = 30;

    /// <summary>Most events a node keeps buffered per session while Redis is unreachable. Default 100000.</summary>
    [Range(1, 10_000_000)]
    public int MaxBufferedEvents { get; set; } = 100_000;

    /// <summary>Redis connect and command timeout in milliseconds. Default 5000.</summary>
    [Range(100, 60_000)]
    public int TimeoutMilliseconds { get; set; } = 5_000;
}
