using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Presence;

/// <summary>The <c>AiStream:Presence</c> section.</summary>
public sealed class PresenceOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Presence";

    /// <summary>A member whose last connection closed leaves only after this grace, so a reload is not a leave/join pair. Default 5 s.</summary>
    [Range(0, 3600)]
    public double LeaveGraceSeconds { get; set; } = 5;

    /// <summary>A connection not renewed for this long is expired and its member leaves (crashes, dead nodes). Default 30 s.</summary>
    [Range(1, 3600)]
    public double TtlSeconds { get; set; } = 30;

    /// <summary>Largest member state, serialised, in bytes. Default 1024.</summary>
    [Range(2, 1024 * 1024)]
    public int MaxStateBytes { get; set; } = 1024;

    /// <summary>Most members listed in the catch-up snapshot; the total is always given. Default 100.</summary>
    [Range(0, 100_000)]
    public int SnapshotCap { get; set; } = 100;

    /// <summary>State updates of one member closer together than this are coalesced into the latest. Default 250 ms.</summary>
    [Range(0, 60_000)]
    public int UpdateCoalesceMilliseconds { get; set; } = 250;

    /// <summary>Most members of one session; one more is refused (429 <c>too_many_members</c>). Default 10,000.</summary>
    [Range(1, 1_000_000)]
    public int MaxMembers { get; set; } = 10_000;

    /// <summary>
    /// Once a session has more members than this, joins, leaves and state updates are not logged one by one but folded
    /// into a <c>presence.count</c> event at most every <see cref="CountIntervalMilliseconds"/> (with N members each
    /// change would otherwise cost N deliveries), until it is back to half of this. Default 100.
    /// </summary>
    [Range(0, 1_000_000)]
    public int CoalesceAbove { get; set; } = 100;

    /// <summary>How often, at most, a crowded session logs its <c>presence.count</c>. Default 1,000 ms.</summary>
    [Range(50, 60_000)]
    public int CountIntervalMilliseconds { get; set; } = 1000;
}
