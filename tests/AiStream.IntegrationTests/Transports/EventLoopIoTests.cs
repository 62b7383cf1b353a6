using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Transports;

/// <summary>
/// The gateway as a process of its own: by default socket continuations run on the thread pool; with
/// AiStream:Transports:EventLoopIo they and the sends run on the I/O threads, and watching and relaying work the same
/// either way.
/// </summary>
public sealed class EventLoopIoTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData(null, "inline completions False, Kestrel inline scheduling False")]
    [InlineData("true", "inline completions True, Kestrel inline scheduling True")]
    public async Task Gateway_ReportsItsSocketMode_AndStreamsEventByEventInIt(string? eventLoopIo, string expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["AiStream:DefaultModel"] = "sim",
            ["Logging:LogLevel:AiStream.Gateway"] = "Information",
        };
        if (eventLoopIo is not null)
        {
            settings["AiStream:Transports:EventLoopIo"] = eventLoopIo;
        }

        await using var gateway = await GatewayProcess.StartAsync(settings);
        var deadline = DateTime.UtcNow + Patience;
        while (!gateway.Output.Contains("Socket I/O:", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.Contains("Socket I/O: " + expected, gateway.Output, StringComparison.Ordinal);

        using var http = gateway.CreateClient();
        var session = "loop-" + Guid.NewGuid().ToString("N")[..8];
        using var response = await http.GetAsync($"api/sessions/{session}/events?clientId=w1", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        var seen = new List<string>();
        while (!string.Join("\n", seen).Contains("presence.join", StringComparison.Ordinal))
        {
            seen.AddRange((await reader.NextEventAsync().WaitAsync(Patience))!);
        }

        using var publisher = gateway.CreateClient();
        for (var i = 0; i < 5; i++)
        {
            using var publish = await publisher.PostAsJsonAsync($"api/sessions/{session}/events",
                new JsonObject { ["type"] = "CUSTOM", ["name"] = "e" + i, ["value"] = i });
            publish.EnsureSuccessStatusCode();
            var frame = await reader.NextEventAsync().WaitAsync(Patience);
            Assert.Contains(frame!, l => l.Contains($"\"name\":\"e{i}\"", StringComparison.Ordinal));
        }

        using var completion = await publisher.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "sim",
            ["stream"] = true,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hello" }),
        });
        var body = await completion.Content.ReadAsStringAsync();
        Assert.Equal("text/event-stream", completion.Content.Headers.ContentType!.MediaType);
        Assert.EndsWith("data: [DONE]\n\n", body, StringComparison.Ordinal);
        Assert.Contains("\"finish_reason\":\"stop\"", body, StringComparison.Ordinal);
    }
}
