using System.Text.Json.Nodes;
using AiStream.Gateway.Webhooks;

namespace AiStream.Tests.Webhooks;

/// <summary>Standard Webhooks signing, checked against the specification's published example, and what is sent.</summary>
public sealed class WebhookSignerTests
{
    [Fact]
    public void Sign_MatchesTheStandardWebhooksExample()
    {
        // The example of the Standard Webhooks specification (and its reference libraries' tests).
        var key = WebhookSigner.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")!;
        Assert.Equal("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            WebhookSigner.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, """{"test": 2432232314}"""));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    [InlineData("whsec_not base64!")]
    [InlineData("whsec_c2hvcnQ=")]
    public void ParseSecret_RefusesWhatIsNotAWhsecSecretOfEnoughBytes(string? secret) => Assert.Null(WebhookSigner.ParseSecret(secret));

    [Fact]
    public void NameOf_MapsTheSessionEventsThatAreSent()
    {
        static JsonObject E(string type, string? name = null) => name is null ? new() { ["type"] = type } : new() { ["type"] = type, ["name"] = name };
        Assert.Equal("run.started", WebhookEventSink.NameOf(E("RUN_STARTED")));
        Assert.Equal("run.finished", WebhookEventSink.NameOf(E("RUN_FINISHED")));
        Assert.Equal("run.error", WebhookEventSink.NameOf(E("RUN_ERROR")));
        Assert.Equal("presence.join", WebhookEventSink.NameOf(E("CUSTOM", "presence.join")));
        Assert.Equal("presence.leave", WebhookEventSink.NameOf(E("CUSTOM", "presence.leave")));
        Assert.Equal("order.placed", WebhookEventSink.NameOf(E("CUSTOM", "order.placed")));
        Assert.Null(WebhookEventSink.NameOf(E("CUSTOM", "presence.update")));
        Assert.Null(WebhookEventSink.NameOf(E("TEXT_MESSAGE_CONTENT")));
    }

    [Fact]
    public void Delivery_IdIsStablePerEventAndSubscription_AndTheBodyCarriesTheEvent()
    {
        var e = new JsonObject { ["type"] = "RUN_FINISHED", ["runId"] = "r1", ["timestamp"] = 1000 };
        var at = DateTimeOffset.UnixEpoch;
        var one = WebhookDelivery.For("crm", "run.finished", "s1", 7, e, at);
        Assert.Equal(one.Id, WebhookDelivery.For("crm", "run.finished", "s1", 7, e, at.AddHours(1)).Id);
        Assert.NotEqual(one.Id, WebhookDelivery.For("ops", "run.finished", "s1", 7, e, at).Id);
        Assert.NotEqual(one.Id, WebhookDelivery.For("crm", "run.finished", "s1", 8, e, at).Id);
        var body = JsonNode.Parse(one.Body)!;
        Assert.Equal("run.finished", body["type"]!.GetValue<string>());
        Assert.Equal("1970-01-01T00:00:00.000Z", body["timestamp"]!.GetValue<string>());
        Assert.Equal(7, body["data"]!["seq"]!.GetValue<long>());
        Assert.Equal("r1", body["data"]!["event"]!["runId"]!.GetValue<string>());
    }
}

/// <summary>What bounds a webhook queue's memory: big events sent as a summary, and a byte budget.</summary>
public sealed class WebhookBoundsTests
{
    [Fact]
    public void ABigEvent_IsSentAsItsTypeAndNameWithTruncated()
    {
        var e = new JsonObject { ["type"] = "CUSTOM", ["name"] = "upload", ["value"] = new string('x', 100_000), ["timestamp"] = 5 };
        var delivery = WebhookDelivery.For("crm", "upload", "s1", 3, e, DateTimeOffset.UnixEpoch, maxEventBytes: 16 * 1024);

        Assert.True(delivery.Body.Length < 1024, $"{delivery.Body.Length} bytes");
        var sent = JsonNode.Parse(delivery.Body)!["data"]!["event"]!;
        Assert.True(sent["truncated"]!.GetValue<bool>());
        Assert.Equal("upload", sent["name"]!.GetValue<string>());
        Assert.Equal("CUSTOM", sent["type"]!.GetValue<string>());
        Assert.True(sent["bytes"]!.GetValue<int>() > 100_000);
    }

    [Fact]
    public async Task TheInMemoryQueue_RefusesPastItsByteBudget_AndTakesMoreOnceDrained()
    {
        var queue = new InMemoryWebhookQueue(Microsoft.Extensions.Options.Options.Create(new WebhookDeliveryOptions { QueueBytes = 10_000, QueueCapacity = 1000 }));
        var e = new JsonObject { ["type"] = "CUSTOM", ["name"] = "x", ["value"] = new string('x', 3000) };
        var accepted = Enumerable.Range(0, 5).Count(i => queue.TryEnqueue(WebhookDelivery.For("s", "x", "s1", i + 1, e, DateTimeOffset.UnixEpoch)));
        Assert.Equal(3, accepted);

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await using var reader = queue.ReadAllAsync(stop.Token).GetAsyncEnumerator(stop.Token);
        Assert.True(await reader.MoveNextAsync());
        Assert.True(queue.TryEnqueue(WebhookDelivery.For("s", "x", "s1", 9, e, DateTimeOffset.UnixEpoch)));
    }
}
