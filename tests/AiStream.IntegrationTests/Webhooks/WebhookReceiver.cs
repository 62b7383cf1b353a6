using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace AiStream.IntegrationTests.Webhooks;

/// <summary>One request a receiver got: the Standard Webhooks headers and the body.</summary>
internal sealed record ReceivedWebhook(string Id, string Timestamp, string Signature, string Body, DateTimeOffset At)
{
    public JsonObject Payload => (JsonObject)JsonNode.Parse(Body)!;

    public string Type => Payload["type"]!.GetValue<string>();

    /// <summary>Verifies the signature as the Standard Webhooks reference does: HMAC-SHA256 over "id.timestamp.body" with the secret's bytes.</summary>
    public bool Verifies(string secret)
    {
        var key = Convert.FromBase64String(secret["whsec_".Length..]);
        var expected = Convert.ToBase64String(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{Id}.{Timestamp}.{Body}")));
        return Signature.Split(' ').Any(s => s == "v1," + expected);
    }
}

/// <summary>
/// A webhook receiver: a real Kestrel server on a loopback port that records every request and answers as the test
/// says (fail some, hang, succeed).
/// </summary>
internal sealed class WebhookReceiver : IAsyncDisposable
{
    public const string Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    private readonly WebApplication _app;
    private readonly CancellationTokenSource _stop = new();

    private WebhookReceiver(WebApplication app) => _app = app;

    public ConcurrentQueue<ReceivedWebhook> Received { get; } = new();

    /// <summary>Status answered to the next requests, one per request; 200 once they are used up.</summary>
    public ConcurrentQueue<int> Answers { get; } = new();

    /// <summary>When set, every request waits here until released (or the client goes away).</summary>
    public TaskCompletionSource? Hold { get; set; }

    /// <summary>Answer every request with this status (after the queued answers).</summary>
    public int Always { get; set; } = 200;

    public string Url { get; private set; } = string.Empty;

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.MapPost("/hook", async (HttpContext context) =>
        {
            using var reader = new StreamReader(context.Request.Body);
            var body = await reader.ReadToEndAsync();
            receiver.Received.Enqueue(new ReceivedWebhook(context.Request.Headers["webhook-id"].ToString(), context.Request.Headers["webhook-timestamp"].ToString(),
                context.Request.Headers["webhook-signature"].ToString(), body, DateTimeOffset.UtcNow));
            if (receiver.Hold is { } hold)
            {
                try
                {
                    await hold.Task.WaitAsync(context.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    return Results.Empty;
                }
            }

            return Results.StatusCode(receiver.Answers.TryDequeue(out var status) ? status : receiver.Always);
        });
        await app.StartAsync();
        receiver.Url = app.Urls.First() + "/hook";
        return receiver;
    }

    /// <summary>Waits until <paramref name="condition"/> holds over what was received.</summary>
    public async Task<List<ReceivedWebhook>> WaitForAsync(Func<List<ReceivedWebhook>, bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            var received = Received.ToList();
            if (condition(received))
            {
                return received;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"waited for {what}; received {received.Count}: {string.Join("\n", received.Select(r => r.Id + " " + r.Body))}");
            }

            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Hold?.TrySetResult();
        await _app.StopAsync();
        await _app.DisposeAsync();
        _stop.Dispose();
    }

    /// <summary>Gateway settings for one subscription to this receiver.</summary>
    public Dictionary<string, string?> Subscription(string name, string events, string? sessions = null)
    {
        var settings = new Dictionary<string, string?>
        {
            [$"AiStream:Webhooks:{name}:Url"] = Url,
            [$"AiStream:Webhooks:{name}:Secret"] = Secret,
            ["AiStream:WebhookDelivery:FirstRetryMilliseconds"] = "50",
            ["AiStream:WebhookDelivery:MaxRetrySeconds"] = "1",
        };
        var list = events.Split(',');
        for (var i = 0; i < list.Length; i++)
        {
            settings[$"AiStream:Webhooks:{name}:Events:{i}"] = list[i];
        }

        if (sessions is not null)
        {
            settings[$"AiStream:Webhooks:{name}:Sessions"] = sessions;
        }

        return settings;
    }
}
