using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Sessions;

/// <summary>Calls on the sessions API and settings for the simulated model.</summary>
internal static class SessionApi
{
    /// <summary>
    /// A client of the gateway that closes a connection as soon as a response is disposed, as a killed client would,
    /// instead of draining it for up to two seconds to reuse the connection.
    /// </summary>
    public static HttpClient Client(this GatewayFactory gateway) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.Start(), Timeout = TimeSpan.FromSeconds(60) };

    public static string NewSessionId() => "s-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>The built-in simulated model at a pace; 0 streams instantly.</summary>
    public static Dictionary<string, string?> Sim(double tokensPerSecond = 0) => new()
    {
        ["AiStream:Providers:sim:TokensPerSecond"] = tokensPerSecond.ToString(CultureInfo.InvariantCulture),
        ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
    };

    public static JsonObject Custom(string name, JsonNode? value) => new() { ["type"] = "CUSTOM", ["name"] = name, ["value"] = value };

    public static JsonObject Text(string type, string messageId, string? delta = null, string? role = null)
    {
        var e = new JsonObject { ["type"] = type, ["messageId"] = messageId };
        if (delta is not null)
        {
            e["delta"] = delta;
        }

        if (role is not null)
        {
            e["role"] = role;
        }

        return e;
    }

    /// <summary>Publishes one event or a batch; asserts 201 and returns the positions.</summary>
    public static async Task<long[]> PublishAsync(HttpClient http, string sessionId, params JsonObject[] events)
    {
        JsonNode body = events.Length == 1 ? events[0] : new JsonArray(events.Select(e => (JsonNode)e).ToArray());
        using var response = await http.PostAsync($"api/sessions/{sessionId}/events",
            new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(201 == (int)response.StatusCode, $"publish answered {(int)response.StatusCode}: {answer}");
        Assert.False(answer!["replayed"]!.GetValue<bool>());
        return answer["seqs"]!.AsArray().Select(s => s!.GetValue<long>()).ToArray();
    }

    /// <summary>Starts a run with one user message; asserts 202 and returns the run id.</summary>
    public static async Task<string> StartRunAsync(HttpClient http, string sessionId, string content = "hi")
    {
        using var response = await http.PostAsJsonAsync($"api/sessions/{sessionId}/runs", new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        });
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(202 == (int)response.StatusCode, $"start run answered {(int)response.StatusCode}: {answer}");
        Assert.Equal(sessionId, answer!["sessionId"]!.GetValue<string>());
        return answer["runId"]!.GetValue<string>();
    }

    public static async Task<JsonObject> InfoAsync(HttpClient http, string sessionId)
    {
        using var response = await http.GetAsync($"api/sessions/{sessionId}");
        Assert.Equal(200, (int)response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonObject>())!;
    }

    public static List<string> ActiveRuns(JsonObject info) => info["activeRuns"]!.AsArray().Select(r => r!.GetValue<string>()).ToList();

    /// <summary>Polls <paramref name="condition"/> until it holds; for state the gateway only changes on its own threads.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(5));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Timed out waiting for: " + what);
            }

            await Task.Delay(20);
        }
    }

    /// <summary>The concatenated deltas of one message, as a client would render it.</summary>
    public static string TextOf(IEnumerable<WatchedEvent> events, string messageId) =>
        string.Concat(events.Where(e => e.Type == "TEXT_MESSAGE_CONTENT" && e.Str("messageId") == messageId).Select(e => e.Str("delta")));

    /// <summary>Asserts positions go up by exactly one: no gap, no duplicate.</summary>
    public static void AssertConsecutive(IEnumerable<WatchedEvent> events, long? first = null)
    {
        var seqs = events.Select(e => e.Seq).ToList();
        Assert.NotEmpty(seqs);
        Assert.Equal(Enumerable.Range(0, seqs.Count).Select(i => (first ?? seqs[0]) + i), seqs);
    }

    /// <summary>The id of the assistant message a run streams.</summary>
    public static string AssistantMessageId(IEnumerable<WatchedEvent> events) =>
        events.First(e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant").Str("messageId")!;
}
