using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Webhooks;

/// <summary>
/// Turns appended events into deliveries for the subscriptions that want them. It only queues (never waits on a
/// receiver), so a slow or dead receiver cannot slow a session.
/// </summary>
internal sealed partial class WebhookEventSink(
    IWebhookQueue queue, IOptionsMonitor<WebhooksOptions> options, IOptions<WebhookDeliveryOptions> delivery, TimeProvider time, ILogger<WebhookEventSink> logger)
    : ISessionEventSink
{
    private long _dropped;

    public bool Listening => options.CurrentValue.Subscriptions.Count > 0;

    public void Appended(string sessionId, IReadOnlyList<(long Seq, JsonObject Body)> events)
    {
        var subscriptions = options.CurrentValue.Subscriptions;
        if (subscriptions.Count == 0)
        {
            return;
        }

        var now = time.GetUtcNow();
        foreach (var (seq, body) in events)
        {
            // A session's log starts at position 1: the event that took it is the one that made the session.
            if (seq == 1)
            {
                Offer(subscriptions, "session.created", sessionId, seq, body, now);
            }

            if (NameOf(body) is { } name)
            {
                Offer(subscriptions, name, sessionId, seq, body, now);
            }
        }
    }

    /// <summary>The webhook event an AG-UI event is, or null for events that are not sent (text, tool calls, state).</summary>
    public static string? NameOf(JsonObject e) => (e["type"] as JsonValue)?.GetValueKind() != JsonValueKind.String ? null : e["type"]!.GetValue<string>() switch
    {
        AgUi.RunStarted => "run.started",
        AgUi.RunFinished => "run.finished",
        AgUi.RunError => "run.error",
        AgUi.Custom when e["name"] is JsonValue name && name.GetValueKind() == JsonValueKind.String
            && name.GetValue<string>() is { } custom && (!custom.StartsWith("presence.", StringComparison.Ordinal) || custom is "presence.join" or "presence.leave") => custom,
        _ => null,
    };

    private void Offer(Dictionary<string, WebhookSubscriptionOptions> subscriptions, string name, string sessionId, long seq, JsonObject body, DateTimeOffset now)
    {
        foreach (var (subscription, o) in subscriptions)
        {
            if ((o.Sessions is { } pattern && !Security.SessionPattern.Matches(pattern, sessionId))
                || !o.Events.Any(e => e == "*" || string.Equals(e, name, StringComparison.Ordinal)))
            {
                continue;
            }

            if (!queue.TryEnqueue(WebhookDelivery.For(subscription, name, sessionId, seq, body, now, delivery.Value.MaxEventBytes)))
            {
                var dropped = Interlocked.Increment(ref _dropped);
                if (dropped == 1 || dropped % 1000 == 0)
                {
                    Log.Dropped(logger, subscription, dropped);
                }
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9101, Level = LogLevel.Warning,
            Message = "Webhook queue full (AiStream:WebhookDelivery:QueueCapacity): a delivery for {Subscription} was dropped ({Dropped} so far)")]
        public static partial void Dropped(ILogger logger, string subscription, long dropped);
    }
}
