using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using AiStream.Client;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Scaleout;
using static AiStream.IntegrationTests.Agents.AgentTrace;

namespace AiStream.IntegrationTests.Client;

/// <summary>
/// The .NET client (src/AiStream.Client) against real gateway processes: a watch that heals after the gateway
/// restarts (with Redis) with no gap and no duplicate, token refresh at expiry, idempotent publishing, cancel and
/// presence, and the conversation model folded from a recorded agent trace and from a late join.
/// </summary>
public sealed class DotNetClientTests
{
    [Fact]
    public async Task AWatch_HealsAfterTheGatewayRestarts_WithNoGapAndNoDuplicate()
    {
        await using var redis = await RedisServer.StartAsync();
        var port = ChildProcesses.FreePort();
        var gateway = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "A", port: port);
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var client = new AiStreamClient(http, new AiStreamClientOptions { BaseAddress = gateway.BaseAddress, MaxBackoff = TimeSpan.FromSeconds(1) });
        var session = ScaleoutKit.NewSessionId();
        var seen = new ConcurrentQueue<SessionEvent>();
        var states = new ConcurrentQueue<(ConnectionState State, DateTime At)>();
        using var stop = new CancellationTokenSource();
        var watching = Task.Run(async () =>
        {
            await foreach (var e in client.WatchAsync(session, new WatchOptions { ClientId = "dotnet", OnStateChanged = s => states.Enqueue((s, DateTime.UtcNow)) }, stop.Token))
            {
                seen.Enqueue(e);
            }
        });
        try
        {
            await WaitAsync(() => seen.Any(e => e.IsSnapshot), "the watch's catch-up"); // watching before anything is published
            for (var i = 0; i < 20; i++)
            {
                await client.PublishAsync(session, [Tick(i)], $"tick-{i}");
            }

            await WaitAsync(() => seen.Count(e => e.Name == "tick") == 20, "the first ticks");
            gateway.Kill();
            await gateway.DisposeAsync();
            await WaitAsync(() => states.Any(s => s.State.Status == ConnectionStatus.Reconnecting && s.State.Attempt >= 2), "reconnect attempts");

            gateway = await ScaleoutKit.StartNodeAsync(redis.ConnectionString, "A", port: port);
            var back = DateTime.UtcNow;
            for (var i = 20; i < 40; i++)
            {
                await client.PublishAsync(session, [Tick(i)], $"tick-{i}");
            }

            await WaitAsync(() => seen.Count(e => e.Name == "tick") == 40, "every tick");
            var healed = states.Last(s => s.State.Status == ConnectionStatus.Live).At;
            Assert.True(healed - back < TimeSpan.FromSeconds(5), $"healed {(healed - back).TotalMilliseconds} ms after the gateway was back");
        }
        finally
        {
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watching);
            await gateway.DisposeAsync();
        }

        var ticks = seen.Where(e => e.Name == "tick").ToList();
        Assert.Equal(Enumerable.Range(0, 40), ticks.Select(e => e.Data["value"]!.GetValue<int>()));
        var positions = seen.Where(e => !e.IsSnapshot && e.Seq > seen.First().Seq).Select(e => e.Seq).ToList();
        Assert.Equal(positions.Distinct().Count(), positions.Count); // no duplicate
        Assert.Equal(Enumerable.Range((int)positions[0], positions.Count).Select(p => (long)p), positions); // no gap
        Assert.Equal(ConnectionStatus.Offline, states.Last().State.Status);
    }

    [Fact]
    public async Task AnExpiringToken_IsRefreshedOnReconnect_AndTheWatchGoesOnWithNoGap()
    {
        await using var gateway = await GatewayProcess.StartAsync(Tokens.AuthOn());
        var issued = 0;
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var client = new AiStreamClient(http, new AiStreamClientOptions
        {
            BaseAddress = gateway.BaseAddress,
            // The first token lives 3 s; the gateway ends the watch at its expiry and the client asks for a fresh one.
            AccessToken = _ => ValueTask.FromResult<string?>(Tokens.Mint("alice", Tokens.Grants(("*", ["read", "write"])), lifetime: Interlocked.Increment(ref issued) == 1 ? TimeSpan.FromSeconds(3) : null)),
        });
        var session = "client-" + Guid.NewGuid().ToString("N")[..8];
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var ticks = new List<int>();
        var clock = Stopwatch.StartNew();
        var publishing = Task.Run(async () =>
        {
            for (var i = 0; i < 12; i++)
            {
                await client.PublishAsync(session, [Tick(i)], $"t-{i}");
                await Task.Delay(500);
            }
        });

        // From the log's start: the publisher may get its first tick in before the watch connects (a catch-up
        // snapshot does not repeat CUSTOM events, and the watch would then wait for a tick that never comes).
        await foreach (var e in client.WatchAsync(session, new WatchOptions { After = 0 }, stop.Token))
        {
            if (e.Name == "tick")
            {
                ticks.Add(e.Data["value"]!.GetValue<int>());
                if (ticks.Count == 12)
                {
                    break;
                }
            }
        }

        await publishing;
        Assert.Equal(Enumerable.Range(0, 12), ticks);
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(3), "the watch outlived its first token");
        Assert.True(issued >= 3, $"tokens issued: {issued}"); // first watch, publishes, and the refresh at expiry
    }

    [Fact]
    public async Task Publish_IsIdempotent_Presence_AndCancel_ReachTheSession()
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?> { ["AiStream:Providers:sim:TokensPerSecond"] = "20" });
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var client = new AiStreamClient(http, new AiStreamClientOptions { BaseAddress = gateway.BaseAddress });
        var session = "client-" + Guid.NewGuid().ToString("N")[..8];
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var events = client.WatchAsync(session, new WatchOptions { ClientId = "ada", Name = "Ada" }, stop.Token).GetAsyncEnumerator(stop.Token);

        var first = await client.PublishAsync(session, [Tick(1)], "same-key");
        var again = await client.PublishAsync(session, [Tick(1)], "same-key");
        Assert.False(first.Replayed);
        Assert.True(again.Replayed);
        Assert.Equal(first.Seqs, again.Seqs);

        await Next(events, e => e.Name == "presence.join");
        await client.SetPresenceStateAsync(session, "ada", new JsonObject { ["typing"] = true });
        var update = await Next(events, e => e.Name == "presence.update" && e.Data["value"]?["id"]?.GetValue<string>() == "ada");
        Assert.True(update.Data["value"]!["state"]!["typing"]!.GetValue<bool>());

        var runId = await client.StartRunAsync(session, new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Tell me about streaming" }) });
        await Next(events, e => e.Type == "TEXT_MESSAGE_CONTENT");
        Assert.Equal("cancelled", await client.CancelRunAsync(session, runId));
        var end = await Next(events, e => e.Type == "RUN_FINISHED");
        Assert.Equal("cancelled", end.Data["outcome"]!["type"]!.GetValue<string>());
        var refused = await Assert.ThrowsAsync<AiStreamException>(() => client.StartRunAsync(session, new JsonObject { ["agent"] = "nobody" }));
        Assert.Equal(400, refused.Status);
        Assert.Equal("unknown_agent", refused.Code);
    }

    [Fact]
    public async Task TheConversationModel_FromTheWholeTraceAndFromALateJoin_IsTheSame()
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?> { ["AiStream:Providers:sim:TokensPerSecond"] = "40" });
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var client = new AiStreamClient(http, new AiStreamClientOptions { BaseAddress = gateway.BaseAddress });
        var session = "client-" + Guid.NewGuid().ToString("N")[..8];
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var whole = new Conversation();
        var late = new Conversation();
        await using var early = client.WatchAsync(session, cancellationToken: stop.Token).GetAsyncEnumerator(stop.Token);
        await Next(early, e => { whole.Apply(e); return e.IsSnapshot; }); // watching before anything happens

        await client.StartRunAsync(session, Agent("researcher", Question));
        // Join once the answer is being written.
        await Next(early, e => { whole.Apply(e); return e.Type == "TEXT_MESSAGE_CONTENT" && whole.Steps.Count == 5; });
        await using var joined = client.WatchAsync(session, cancellationToken: stop.Token).GetAsyncEnumerator(stop.Token);
        await Next(joined, e => { late.Apply(e); return e.IsSnapshot; }); // joined while the answer streams
        await Next(early, e => { whole.Apply(e); return e.Type == "RUN_FINISHED"; });
        await Next(joined, e => { late.Apply(e); return e.Type == "RUN_FINISHED"; });

        foreach (var model in new[] { whole, late })
        {
            Assert.Null(model.ActiveRunId);
            Assert.Equal("391", model.State!["findings"]!.GetValue<string>());
            var calls = model.Messages.SelectMany(m => m.ToolCalls).ToList();
            Assert.Equal(["calculate", "write_state"], calls.Select(c => c.Name));
            Assert.Equal("""{"expression":"17 * 23"}""", calls[0].Arguments);
            Assert.Equal("391", calls[0].Result);
            Assert.All(calls, c => Assert.True(c.IsComplete && !c.IsError));
            Assert.Equal(["model:1", "tool:calculate", "model:2", "tool:write_state", "model:3"], model.Steps.Select(s => s.Name));
            Assert.All(model.Steps, s => Assert.True(s.IsFinished));
            Assert.Equal(Question, model.Messages.First(m => m.Role == "user").Content);
            Assert.Contains("calculate gave 391", model.Messages.Last(m => m.Role == "assistant").Content, StringComparison.Ordinal);
            Assert.All(model.Messages, m => Assert.False(m.IsStreaming));
        }

        Assert.Equal(whole.Messages.Where(m => m.Role != "reasoning").Select(m => (m.Role, m.Content)), late.Messages.Where(m => m.Role != "reasoning").Select(m => (m.Role, m.Content)));
    }

    private static JsonObject Tick(int i) => new() { ["type"] = "CUSTOM", ["name"] = "tick", ["value"] = i };

    private static async Task<SessionEvent> Next(IAsyncEnumerator<SessionEvent> events, Func<SessionEvent, bool> match)
    {
        while (await events.MoveNextAsync())
        {
            if (match(events.Current))
            {
                return events.Current;
            }
        }

        throw new InvalidOperationException("the watch ended");
    }

    private static async Task WaitAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for " + what);
            await Task.Delay(20);
        }
    }
}
