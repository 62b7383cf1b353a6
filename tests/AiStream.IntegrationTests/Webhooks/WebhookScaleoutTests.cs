using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Scaleout;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Webhooks;

/// <summary>
/// Webhooks with Redis and gateway nodes as real processes: each event is sent once per subscription whichever node
/// appended it and however many nodes saw it, and a delivery whose node dies mid-send is sent again by another node
/// under the same <c>webhook-id</c>.
/// </summary>
public sealed class WebhookScaleoutTests
{
    [Fact]
    public async Task TwoNodes_EachEventIsDeliveredOncePerSubscription()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var receiver = await WebhookReceiver.StartAsync();
        var settings = receiver.Subscription("all", "order.placed,presence.join,session.created");
        var nodes = await ScaleoutKit.StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        using var onA = a.Client();
        using var onB = b.Client();
        var session = ScaleoutKit.NewSessionId();

        // A member on each node: both nodes mirror the session and both see each join. Ada's join is the session's
        // first event (it creates the session), logged by a presence script while A's copy of the session is made.
        using var ada = await SessionWatcher.OpenAsync(onA, session, clientId: "ada", memberName: "Ada");
        using var bob = await SessionWatcher.OpenAsync(onB, session, clientId: "bob", memberName: "Bob");
        for (var i = 0; i < 20; i++)
        {
            await PublishAsync(i % 2 == 0 ? onA : onB, session, Custom("order.placed", i));
        }

        await receiver.WaitForAsync(r => r.Count(x => x.Type == "order.placed") == 20 && r.Count(x => x.Type == "presence.join") == 2
            && r.Any(x => x.Type == "session.created"), "20 orders, two joins and the session's creation");
        await Task.Delay(TimeSpan.FromSeconds(1)); // anything sent twice would have arrived by now
        var received = receiver.Received.ToList();

        Assert.Equal(received.Count, received.Select(r => r.Id).Distinct().Count());
        Assert.Equal(Enumerable.Range(0, 20), received.Where(r => r.Type == "order.placed")
            .Select(r => r.Payload["data"]!["event"]!["value"]!.GetValue<int>()).Order());
        Assert.Equal(["Ada", "Bob"], received.Where(r => r.Type == "presence.join").Select(Name).Order(StringComparer.Ordinal));
        var created = Assert.Single(received, r => r.Type == "session.created");
        Assert.Equal("Ada", created.Payload["data"]!["event"]!["value"]!["name"]!.GetValue<string>());
        Assert.All(received, r => Assert.True(r.Verifies(WebhookReceiver.Secret)));
    }

    [Fact]
    public async Task ANodeDies_ItsMemberLeavesAndItsRunErrs_EachSentOnce_EvenWithNoOtherNodeServingTheSession()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var receiver = await WebhookReceiver.StartAsync();
        var settings = ScaleoutKit.Merge(receiver.Subscription("all", "presence.leave,run.error"), ScaleoutKit.Sim(tokensPerSecond: 20));
        var a = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "A", settings);
        await using var b = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "B", settings);
        var session = ScaleoutKit.NewSessionId();
        string runId;
        using (var onA = a.Client())
        {
            // Ada watches on A only, and A runs a long answer: B has never seen the session.
            using var ada = await ScaleoutKit.WatchAsync(onA, session, clientId: "ada", memberName: "Ada");
            runId = await ScaleoutKit.StartRunAsync(onA, session, "Tell me about streaming, latency, backpressure and failures in distributed systems");
            await ada.WaitForAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", "the run's first token");
            a.Kill();
            await a.DisposeAsync();
        }

        // Ada's connection, and the run's agent member, expire with nobody renewing them; B's sweep logs their leaves,
        // and B sends them.
        await receiver.WaitForAsync(r => r.Count(x => x.Type == "presence.leave") == 2, "Ada's and the agent's leaves", TimeSpan.FromSeconds(30));

        // Someone opens the session on B: B finds A's run orphaned, ends it, and sends its run.error once.
        using var onB = b.Client();
        using var bob = await ScaleoutKit.WatchAsync(onB, session, clientId: "bob", memberName: "Bob");
        await bob.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(30));
        await receiver.WaitForAsync(r => r.Any(x => x.Type == "run.error"), "the run's error", TimeSpan.FromSeconds(15));
        await Task.Delay(TimeSpan.FromSeconds(1));
        var received = receiver.Received.ToList();

        var leaves = received.Where(r => r.Type == "presence.leave").Select(r => r.Payload["data"]!["event"]!["value"]!).ToList();
        Assert.Equal(["ada", "agent:" + runId], leaves.Select(l => l!["id"]!.GetValue<string>()).Order(StringComparer.Ordinal));
        Assert.All(leaves, l => Assert.Equal("expired", l!["reason"]!.GetValue<string>()));
        var error = Assert.Single(received, r => r.Type == "run.error");
        Assert.Equal("node_lost", error.Payload["data"]!["event"]!["code"]!.GetValue<string>());
        Assert.Equal(runId, error.Payload["data"]!["event"]!["runId"]!.GetValue<string>());
        Assert.All(received, r => Assert.True(r.Verifies(WebhookReceiver.Secret)));
    }

    private static string Name(ReceivedWebhook r) => r.Payload["data"]!["event"]!["value"]!["name"]!.GetValue<string>();

    [Fact]
    public async Task RedisLosingTheQueue_DoesNotStopTheGateway_AndDeliveriesGoOn()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var a = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "A", receiver.Subscription("all", "order.placed"));
        using var http = a.Client();
        var session = ScaleoutKit.NewSessionId();
        await PublishAsync(http, session, Custom("order.placed", 1));
        await receiver.WaitForAsync(r => r.Count == 1, "the first delivery");

        // The stream and its consumer group vanish (a flush, a restart without persistence, a failover).
        Assert.StartsWith("+OK", await redis.CommandAsync("FLUSHALL"), StringComparison.Ordinal);
        await Task.Delay(TimeSpan.FromSeconds(2));
        await PublishAsync(http, ScaleoutKit.NewSessionId(), Custom("order.placed", 2));

        var received = await receiver.WaitForAsync(r => r.Count == 2, "a delivery after the flush");
        Assert.Equal(2, received[1].Payload["data"]!["event"]!["value"]!.GetValue<int>());
        using var ready = await http.GetAsync("readyz");
        Assert.True(ready.IsSuccessStatusCode, "the gateway is still up");
    }

    [Fact]
    public async Task ANodeThatDiesMidDelivery_AnotherNodeSendsItAgain_UnderTheSameId()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var receiver = await WebhookReceiver.StartAsync();
        receiver.Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var settings = receiver.Subscription("all", "order.placed");
        var a = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "A", settings);
        var session = ScaleoutKit.NewSessionId();
        using (var onA = a.Client())
        {
            await PublishAsync(onA, session, Custom("order.placed", new JsonObject { ["orderId"] = 7 }));
        }

        // A is sending it (the receiver holds the request) when it dies; B is running.
        var first = (await receiver.WaitForAsync(r => r.Count == 1, "A's attempt")).Single();
        await using var b = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "B", settings);
        receiver.Hold = null;
        a.Kill();
        await a.DisposeAsync();

        // B takes it over once A has not renewed it for twice the node timeout, and sends the same delivery.
        var received = await receiver.WaitForAsync(r => r.Count >= 2, "B's attempt", TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(ScaleoutKit.NodeTimeoutSeconds * 3));

        Assert.Equal(2, receiver.Received.Count);
        Assert.Equal(first.Id, received[1].Id);
        Assert.Equal(first.Body, received[1].Body);
        Assert.True(received[1].Verifies(WebhookReceiver.Secret));
        Assert.True(received[1].At - first.At >= TimeSpan.FromSeconds(ScaleoutKit.NodeTimeoutSeconds), "taken over only after the dead node's claim lapsed");
    }
}
