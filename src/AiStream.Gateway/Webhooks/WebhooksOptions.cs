using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Webhooks;

/// <summary>
/// The <c>AiStream:Webhooks</c> section: one subscription per name, e.g. <c>AiStream:Webhooks:crm:Url</c>. Each
/// sends the events it names, signed as Standard Webhooks says.
/// </summary>
public sealed class WebhooksOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Webhooks";

    /// <summary>The subscriptions by name.</summary>
    public Dictionary<string, WebhookSubscriptionOptions> Subscriptions { get; } = new(StringComparer.Ordinal);
}

/// <summary>One webhook subscription.</summary>
public sealed class WebhookSubscriptionOptions
{
    /// <summary>Where the events are POSTed: an absolute http or https URL.</summary>
    public string? Url { get; set; }

    /// <summary>The signing secret, <c>whsec_</c> and base64 (at least 24 bytes), as Standard Webhooks has it.</summary>
    public string? Secret { get; set; }

    /// <summary>
    /// Which events to send: <c>run.started</c>, <c>run.finished</c>, <c>run.error</c>, <c>presence.join</c>,
    /// <c>presence.leave</c>, <c>session.created</c>, the name of any <c>CUSTOM</c> event, or <c>*</c> for all of these.
    /// </summary>
    public string[] Events { get; set; } = [];

    /// <summary>Only sessions matching this pattern (<c>*</c> and <c>prefix*</c>, as in the token's sessions); all when unset.</summary>
    public string? Sessions { get; set; }
}

/// <summary>The <c>AiStream:WebhookDelivery</c> section: how hard and how fast webhooks are delivered.</summary>
public sealed class WebhookDeliveryOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:WebhookDelivery";

    /// <summary>Attempts per delivery before it is recorded as failed. Default 6.</summary>
    [Range(1, 50)]
    public int MaxAttempts { get; set; } = 6;

    /// <summary>The first retry's delay; each next one doubles, with jitter. Default 1000 ms.</summary>
    [Range(1, 600_000)]
    public int FirstRetryMilliseconds { get; set; } = 1000;

    /// <summary>Longest delay between two attempts. Default 300 s.</summary>
    [Range(0.01, 86_400)]
    public double MaxRetrySeconds { get; set; } = 300;

    /// <summary>Most one attempt may take before it counts as failed. Default 10 s.</summary>
    [Range(0.01, 600)]
    public double TimeoutSeconds { get; set; } = 10;

    /// <summary>Deliveries waiting on this node; past it new ones are dropped and counted (a dead receiver cannot fill memory). Default 10000.</summary>
    [Range(1, 10_000_000)]
    public int QueueCapacity { get; set; } = 10_000;

    /// <summary>Bytes of deliveries waiting on this node; past it new ones are dropped and counted. Default 64 MiB.</summary>
    [Range(1024, long.MaxValue)]
    public long QueueBytes { get; set; } = 64 * 1024 * 1024;

    /// <summary>
    /// Largest session event sent whole, serialised; a larger one is sent as its type and name with
    /// <c>"truncated":true</c> (the receiver reads it from the session by its position). Default 16 KiB.
    /// </summary>
    [Range(256, 16 * 1024 * 1024)]
    public int MaxEventBytes { get; set; } = 16 * 1024;

    /// <summary>Deliveries in flight at once on this node. Default 8.</summary>
    [Range(1, 1000)]
    public int Concurrency { get; set; } = 8;

    /// <summary>Failed deliveries kept for <c>GET /api/webhooks/failures</c> (the newest). Default 1000.</summary>
    [Range(1, 1_000_000)]
    public int MaxFailures { get; set; } = 1000;
}
