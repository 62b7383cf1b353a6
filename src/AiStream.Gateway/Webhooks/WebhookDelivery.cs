using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace AiStream.Gateway.Webhooks;

/// <summary>
/// One event for one subscription: its payload is made once, when the event is appended, so every attempt and every
/// node sends the same bytes under the same <c>webhook-id</c> (a receiver dedupes on it, as Standard Webhooks says).
/// </summary>
internal sealed record WebhookDelivery(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("subscription")] string Subscription,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("seq")] long Seq,
    [property: JsonPropertyName("body")] string Body)
{
    /// <summary>Where the queue keeps it (a Redis stream entry id); null in memory.</summary>
    [JsonIgnore]
    public string? QueueId { get; init; }

    public static WebhookDelivery For(string subscription, string type, string sessionId, long seq, JsonObject e, DateTimeOffset now, int maxEventBytes = int.MaxValue)
    {
        var timestamp = e["timestamp"]?.ToJsonString() ?? "";
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{subscription}\n{type}\n{sessionId}\n{seq}\n{timestamp}"));
        var body = new JsonObject
        {
            ["type"] = type,
            ["timestamp"] = now.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture),
            ["data"] = new JsonObject { ["sessionId"] = sessionId, ["seq"] = seq, ["event"] = Bounded(e, maxEventBytes) },
        };
        return new WebhookDelivery("msg_" + Convert.ToHexStringLower(hash, 0, 16), subscription, type, sessionId, seq, body.ToJsonString());
    }

    /// <summary>The event, or when it is larger than the bound its type, name and run with <c>"truncated":true</c>.</summary>
    private static JsonObject Bounded(JsonObject e, int maxEventBytes)
    {
        var json = e.ToJsonString();
        if (json.Length <= maxEventBytes)
        {
            return (JsonObject)e.DeepClone();
        }

        var summary = new JsonObject { ["type"] = e["type"]?.DeepClone(), ["truncated"] = true, ["bytes"] = json.Length };
        foreach (var key in (ReadOnlySpan<string>)["name", "runId", "threadId", "timestamp"])
        {
            if (e[key] is JsonValue value && value.ToJsonString().Length <= 512)
            {
                summary[key] = value.DeepClone();
            }
        }

        return summary;
    }
}

/// <summary>A delivery that kept failing, as <c>GET /api/webhooks/failures</c> lists it.</summary>
internal sealed record WebhookFailure(
    [property: JsonPropertyName("subscription")] string Subscription,
    [property: JsonPropertyName("webhookId")] string WebhookId,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("sessionId")] string SessionId,
    [property: JsonPropertyName("seq")] long Seq,
    [property: JsonPropertyName("attempts")] int Attempts,
    [property: JsonPropertyName("lastStatus")] int? LastStatus,
    [property: JsonPropertyName("lastError")] string LastError,
    [property: JsonPropertyName("failedAt")] DateTimeOffset FailedAt);

/// <summary>Where deliveries wait: in memory on one node; with Redis, a stream every node reads from, one node per delivery.</summary>
internal interface IWebhookQueue
{
    /// <summary>Queues a delivery without waiting; false when the queue is full (the delivery is dropped and counted).</summary>
    bool TryEnqueue(WebhookDelivery delivery);

    /// <summary>Deliveries to send, each handed to this node alone; the next is read only when the caller asks for it.</summary>
    IAsyncEnumerable<WebhookDelivery> ReadAllAsync(CancellationToken cancellationToken);

    /// <summary>The delivery is done: sent, or failed for good (then <paramref name="failure"/> is recorded).</summary>
    ValueTask CompleteAsync(WebhookDelivery delivery, WebhookFailure? failure);

    /// <summary>The newest failed deliveries, newest first.</summary>
    ValueTask<IReadOnlyList<WebhookFailure>> FailuresAsync(CancellationToken cancellationToken);
}

[JsonSerializable(typeof(WebhookDelivery))]
[JsonSerializable(typeof(WebhookFailure))]
[JsonSerializable(typeof(FailureList))]
internal sealed partial class WebhooksJsonContext : JsonSerializerContext;

internal sealed record FailureList([property: JsonPropertyName("object")] string Object, [property: JsonPropertyName("data")] IReadOnlyList<WebhookFailure> Data);
