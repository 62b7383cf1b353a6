using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Sessions;

/// <summary>The <c>AiStream:Sessions</c> section: the session log, runs and backpressure.</summary>
public sealed class SessionsOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Sessions";

    /// <summary>Most events a session log keeps; older ones are summarised by the catch-up snapshot. Default 10000.</summary>
    [Range(16, 10_000_000)]
    public int MaxEvents { get; set; } = 10_000;

    /// <summary>
    /// Most serialised bytes of events a session log keeps; older ones are summarised by the catch-up snapshot, as with
    /// <see cref="MaxEvents"/>. Default 8 MiB.
    /// </summary>
    [Range(64 * 1024, 4L * 1024 * 1024 * 1024)]
    public long MaxLogBytes { get; set; } = 8 * 1024 * 1024;

    /// <summary>Most runs in progress in one session on one node; another is refused with 429. Default 16.</summary>
    [Range(1, 100_000)]
    public int MaxRunsPerSession { get; set; } = 16;

    /// <summary>Most sessions one node holds at once; a new session past it is refused with 503 and Retry-After. Default 10000.</summary>
    [Range(1, 10_000_000)]
    public int MaxSessions { get; set; } = 10_000;

    /// <summary>Oldest event a session log keeps, in minutes. Default 60.</summary>
    [Range(1, 7 * 24 * 60)]
    public double MaxEventAgeMinutes { get; set; } = 60;

    /// <summary>A resume further behind the head than this gets the catch-up snapshot instead of a replay. Default 2000.</summary>
    [Range(1, 10_000_000)]
    public int MaxReplayEvents { get; set; } = 2_000;

    /// <summary>A session with no watchers, no run and no event for this long is forgotten, in minutes. Default 60.</summary>
    [Range(1, 7 * 24 * 60)]
    public double SessionIdleMinutes { get; set; } = 60;

    /// <summary>A subscriber with this many events queued is behind: its text deltas are merged. Default 64.</summary>
    [Range(1, 1_000_000)]
    public int CoalesceThreshold { get; set; } = 64;

    /// <summary>A subscriber with this many events queued is disconnected with a reason; it can resume. Default 4096.</summary>
    [Range(2, 10_000_000)]
    public int SubscriberHardLimit { get; set; } = 4_096;

    /// <summary>Cancel a run when nobody has watched its session for this many seconds; 0 disables. Default 60.</summary>
    [Range(0, 24 * 3600)]
    public double IdleCancelSeconds { get; set; } = 60;

    /// <summary>How long an <c>Idempotency-Key</c> of a publish is remembered, in minutes. Default 10.</summary>
    [Range(0.1, 24 * 60)]
    public double IdempotencyKeyMinutes { get; set; } = 10;

    /// <summary>Most events in one publish batch. Default 1000.</summary>
    [Range(1, 100_000)]
    public int MaxPublishBatch { get; set; } = 1_000;

    /// <summary>Deepest the shared state may be (a scalar is 0, <c>{}</c> 1), checked after every patch. Default 32.</summary>
    [Range(2, 256)]
    public int MaxStateDepth { get; set; } = 32;

    /// <summary>Largest the shared state may be, in (approximate serialised) bytes, checked after every patch. Default 1 MiB.</summary>
    [Range(1024, 256L * 1024 * 1024)]
    public long MaxStateBytes { get; set; } = 1024 * 1024;

    /// <summary>Largest single event, serialised, in bytes. Default 256 KiB.</summary>
    [Range(256, 64 * 1024 * 1024)]
    public int MaxEventBytes { get; set; } = 256 * 1024;

    /// <summary>Most members a catch-up snapshot lists (set from <c>AiStream:Presence:SnapshotCap</c>, not bound itself).</summary>
    internal int PresenceSnapshotCap { get; set; } = 100;
}
