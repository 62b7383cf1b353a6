using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Webhooks;

/// <summary>
/// Webhooks out, on one node: signed as Standard Webhooks says, retried until the receiver takes them, filtered by
/// event and session, recorded when they keep failing, and never in the way of the session's watchers.
/// </summary>
public sealed class WebhookTests
{
    [Fact]
    public async Task AReceiverThatFailsTwice_GetsTheEventOnTheThirdTry_SignedAndWithTheSameId()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Answers.Enqueue(500);
        receiver.Answers.Enqueue(503);
        await using var gateway = new GatewayFactory(Merge(Sim(), receiver.Subscription("crm", "order.placed")));
        using var http = gateway.Client();
        var session = NewSessionId();

        var seqs = await PublishAsync(http, session, Custom("order.placed", new JsonObject { ["orderId"] = 42 }), Custom("order.viewed", null));
        var received = await receiver.WaitForAsync(r => r.Count >= 3, "three attempts");

        Assert.Equal(3, received.Count);
        Assert.Single(received.Select(r => r.Id).Distinct());
        Assert.StartsWith("msg_", received[0].Id, StringComparison.Ordinal);
        Assert.Single(received.Select(r => r.Body).Distinct());
        Assert.All(received, r => Assert.True(r.Verifies(WebhookReceiver.Secret), "the signature verifies with the reference algorithm"));
        Assert.All(received, r => Assert.InRange(long.Parse(r.Timestamp, System.Globalization.CultureInfo.InvariantCulture),
            DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeSeconds()));
        var payload = received[2].Payload;
        Assert.Equal("order.placed", payload["type"]!.GetValue<string>());
        Assert.Equal(session, payload["data"]!["sessionId"]!.GetValue<string>());
        Assert.Equal(seqs[0], payload["data"]!["seq"]!.GetValue<long>());
        Assert.Equal(42, payload["data"]!["event"]!["value"]!["orderId"]!.GetValue<int>());
        // The other custom event is not subscribed, and nothing more arrives.
        await Task.Delay(300);
        Assert.Equal(3, receiver.Received.Count);
        Assert.Empty(await FailuresAsync(http));
    }

    [Fact]
    public async Task EventsAndSessionsFilters_AreHonoured_AndTheFirstEventOfASessionIsSessionCreated()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var gateway = new GatewayFactory(Merge(Sim(), receiver.Subscription("ops", "run.finished,presence.join,session.created", sessions: "orders-*")));
        using var http = gateway.Client();
        var orders = "orders-" + Guid.NewGuid().ToString("N")[..8];
        var other = "other-" + Guid.NewGuid().ToString("N")[..8];

        foreach (var session in new[] { orders, other })
        {
            using var watcher = await SessionWatcher.OpenAsync(http, session, clientId: "ada", memberName: "Ada");
            var runId = await StartRunAsync(http, session, "hello");
            await watcher.ReadUntilAsync(e => e.IsRunEnd && e.RunId == runId);
        }

        var received = await receiver.WaitForAsync(r => r.Any(x => x.Type == "run.finished"), "the run's end");
        await Task.Delay(300);
        received = [.. receiver.Received];
        Assert.All(received, r => Assert.Equal(orders, r.Payload["data"]!["sessionId"]!.GetValue<string>()));
        // Ada joined, then the run (a member while it runs) joined and finished; its start and text are not subscribed.
        Assert.Equal(["presence.join", "presence.join", "run.finished", "session.created"], received.Select(r => r.Type).Order(StringComparer.Ordinal));
        Assert.Equal(["Ada", "sim"], received.Where(r => r.Type == "presence.join")
            .Select(r => r.Payload["data"]!["event"]!["value"]!["name"]!.GetValue<string>()).Order(StringComparer.Ordinal));
        Assert.Equal(1, received.Single(r => r.Type == "session.created").Payload["data"]!["seq"]!.GetValue<long>());
    }

    [Fact]
    public async Task ADeadReceiver_DoesNotSlowDeliveryToWatchers()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously); // accepts and never answers
        var settings = Merge(Sim(), receiver.Subscription("slow", "*"));
        settings["AiStream:WebhookDelivery:TimeoutSeconds"] = "60";
        settings["AiStream:WebhookDelivery:Concurrency"] = "2";
        settings["AiStream:Limits:MessagesPerSecond"] = "0"; // the burst is the point, not the caller's rate limit
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Client();
        var session = NewSessionId();
        using var watcher = await SessionWatcher.OpenAsync(http, session, background: true);

        // Both delivery slots are stuck on the receiver before the burst starts.
        await PublishAsync(http, session, Custom("warmup.1", null));
        await PublishAsync(http, session, Custom("warmup.2", null));
        await receiver.WaitForAsync(r => r.Count >= 2, "two held deliveries");

        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 200; i++)
        {
            await PublishAsync(http, session, Custom("tick", i));
        }

        await watcher.WaitForCountAsync(e => e.Name == "tick", 200, "every tick", TimeSpan.FromSeconds(10));
        clock.Stop();
        // 200 publishes and their delivery to a watcher, with every webhook slot held by a receiver that never answers.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed.TotalMilliseconds} ms");
        Assert.Equal(2, receiver.Received.Count);
    }

    [Fact]
    public async Task ADeliveryThatKeepsFailing_IsListedForAdmins_AndOnlyForAdmins()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Always = 503;
        var settings = Tokens.AuthOn(Merge(Sim(), receiver.Subscription("broken", "order.placed")));
        settings["AiStream:WebhookDelivery:MaxAttempts"] = "2";
        await using var gateway = new GatewayFactory(settings);
        using var admin = gateway.Client().WithBearer(Tokens.Mint("root", Tokens.Grants(("*", ["read", "write"])), "admin"));
        using var member = gateway.Client().WithBearer(Tokens.Mint("bob", Tokens.Grants(("*", ["read", "write"]))));
        using var anonymous = gateway.Client();
        var session = NewSessionId();

        await PublishAsync(admin, session, Custom("order.placed", null));
        var failures = await EventuallyAsync(async () => await FailuresAsync(admin) is { Count: > 0 } list ? list : null);

        var failure = Assert.Single(failures)!;
        Assert.Equal("broken", failure["subscription"]!.GetValue<string>());
        Assert.Equal("order.placed", failure["type"]!.GetValue<string>());
        Assert.Equal(session, failure["sessionId"]!.GetValue<string>());
        Assert.Equal(2, failure["attempts"]!.GetValue<int>());
        Assert.Equal(503, failure["lastStatus"]!.GetValue<int>());
        Assert.Equal(receiver.Received.First().Id, failure["webhookId"]!.GetValue<string>());
        using var forbidden = await member.GetAsync("api/webhooks/failures");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        using var unauthorized = await anonymous.GetAsync("api/webhooks/failures");
        Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode);
    }

    [Theory]
    [InlineData("Url", "ftp://example.com/hook", "AiStream:Webhooks:bad:Url: must be an absolute http or https URL")]
    [InlineData("Secret", "whsec_c2hvcnQ=", "AiStream:Webhooks:bad:Secret: must be 'whsec_'")]
    [InlineData("Secret", "not-a-secret", "AiStream:Webhooks:bad:Secret: must be 'whsec_'")]
    public async Task AnInvalidSubscription_StopsTheStartNamingTheKey(string key, string value, string expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["AiStream:Webhooks:bad:Url"] = "http://127.0.0.1:1/hook",
            ["AiStream:Webhooks:bad:Secret"] = WebhookReceiver.Secret,
            ["AiStream:Webhooks:bad:Events:0"] = "run.finished",
        };
        settings[$"AiStream:Webhooks:bad:{key}"] = value;

        var (code, _, error) = await GatewayProcess.RunUntilExitAsync(settings, ChildProcesses.FreePort());

        Assert.Equal(1, code);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("aistream: invalid configuration: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    private static async Task<List<JsonNode?>> FailuresAsync(HttpClient http) =>
        [.. (await http.GetFromJsonAsync<JsonObject>("api/webhooks/failures"))!["data"]!.AsArray()];

    private static async Task<T> EventuallyAsync<T>(Func<Task<T?>> check)
        where T : class
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            if (await check() is { } done)
            {
                return done;
            }

            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(50);
        }
    }

    internal static Dictionary<string, string?> Merge(params Dictionary<string, string?>[] parts)
    {
        var merged = new Dictionary<string, string?>();
        foreach (var part in parts)
        {
            foreach (var (k, v) in part)
            {
                merged[k] = v;
            }
        }

        return merged;
    }
}
