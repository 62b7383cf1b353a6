using System.Diagnostics;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>The SSE watch on the wire: headers, the retry hint, ids, and heartbeats on an idle session.</summary>
public sealed class SseWatchWireTests
{
    [Fact]
    public async Task Watch_IdleSession_SendsRetryHintThenEventsWithIdsThenHeartbeatComments()
    {
        var time = new FakeTimeProvider();
        await using var gateway = new GatewayFactory(new Dictionary<string, string?>
        {
            ["AiStream:Transports:SseHeartbeatSeconds"] = "15",
            ["AiStream:Transports:SseRetryMilliseconds"] = "2500",
        }, time);
        using var http = gateway.Client();
        var session = NewSessionId();
        var seqs = await PublishAsync(http, session, Custom("a", 1), Custom("b", 2));

        using var response = await http.GetAsync($"api/sessions/{session}/events?after=0&clientId=wire", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());

        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("no", response.Headers.GetValues("X-Accel-Buffering").Single());
        Assert.Equal("no-cache", response.Headers.CacheControl!.ToString());
        Assert.Equal(["retry: 2500"], await reader.NextEventAsync());
        foreach (var seq in seqs)
        {
            var frame = (await reader.NextEventAsync())!;
            Assert.Equal(2, frame.Count);
            Assert.Contains($"id: {seq}", frame);
            Assert.StartsWith("data: {\"type\":\"CUSTOM\"", frame.Single(l => l.StartsWith("data: ", StringComparison.Ordinal)), StringComparison.Ordinal);
            Assert.DoesNotContain(frame, l => l.StartsWith("event:", StringComparison.Ordinal));
        }

        // The watcher's own presence.join, then silence: nothing more until the heartbeat interval passes.
        Assert.Contains("presence.join", string.Join("\n", (await reader.NextEventAsync())!), StringComparison.Ordinal);
        var next = reader.NextEventAsync();
        await Task.Delay(100);
        Assert.False(next.IsCompleted, "nothing is sent before the heartbeat interval");
        for (var i = 0; i < 30 && !next.IsCompleted; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.WhenAny(next, Task.Delay(30));
        }

        Assert.Equal([": heartbeat"], await next.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.InRange(time.GetUtcNow() - new FakeTimeProvider().GetUtcNow(), TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(16));
    }
    [Theory]
    [InlineData(15, true)]
    [InlineData(0, false)]
    public async Task Watch_AcceptedConnection_HasTcpKeepAliveSoAVanishedPeerIsFound(int seconds, bool expected)
    {
        await using var gateway = new GatewayFactory(new Dictionary<string, string?> { ["AiStream:Transports:TcpKeepAliveSeconds"] = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        using var http = gateway.Client();
        var port = http.BaseAddress!.Port;

        using var response = await http.GetAsync($"api/sessions/{NewSessionId()}/events", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        Assert.NotNull(await reader.NextEventAsync());

        // The kernel's view of the gateway's side of the connection: ss shows a keepalive timer when it is on.
        using var ss = Process.Start(new ProcessStartInfo("ss", ["-tnoH", "state", "established", $"( sport = :{port} )"]) { RedirectStandardOutput = true })!;
        var sockets = await ss.StandardOutput.ReadToEndAsync();
        await ss.WaitForExitAsync();

        Assert.NotEmpty(sockets.Trim());
        Assert.Equal(expected, sockets.Contains("keepalive", StringComparison.Ordinal));
        if (expected)
        {
            Assert.Matches(@"timer:\(keepalive,1[0-5]sec", sockets);
        }
    }
    [Fact]
    public async Task Info_OfSessionsNobodyUsed_AnswersEmptyWithoutCreatingThem()
    {
        await using var gateway = new GatewayFactory();
        using var http = gateway.Client();
        var store = Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions
            .GetRequiredService<AiStream.Gateway.Sessions.InMemorySessionStore>(gateway.Services);
        var before = store.SessionCount;

        for (var i = 0; i < 50; i++)
        {
            var info = await InfoAsync(http, NewSessionId());
            Assert.Equal(0, info["headSeq"]!.GetValue<long>());
            Assert.Empty(ActiveRuns(info));
            // The AI SDK's resume and stop of a chat nobody started: nothing to resume or stop, and nothing created.
            using var resume = await http.GetAsync($"api/chat/{NewSessionId()}/stream");
            using var stop = await http.PostAsync($"api/chat/{NewSessionId()}/stop", null);
            Assert.Equal([204, 204], [(int)resume.StatusCode, (int)stop.StatusCode]);
        }

        Assert.Equal(before, store.SessionCount);
        await PublishAsync(http, NewSessionId(), Custom("x", 1));
        Assert.Equal(before + 1, store.SessionCount);
    }
}
