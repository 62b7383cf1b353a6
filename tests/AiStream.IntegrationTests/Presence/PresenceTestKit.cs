using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.IntegrationTests.Presence;

/// <summary>Calls on the presence API, settings, and fake-time stepping.</summary>
internal static class PresenceApi
{
    /// <summary>A client that closes a connection as soon as its response is disposed, as a closed tab does.</summary>
    public static HttpClient Client(this GatewayFactory gateway) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.Start(), Timeout = TimeSpan.FromSeconds(60) };

    public static string NewSessionId() => "p-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>
    /// Opens a watch as a given client (<c>?clientId=&amp;name=&amp;color=</c>), read in the background so a test can
    /// advance fake time and look at what arrived so far. Once the headers are back the gateway has subscribed it and
    /// made the client present.
    /// </summary>
    public static Task<SessionWatcher> WatchAsync(HttpClient http, string sessionId, string? clientId, string? name = null, string? color = null, long? after = null) =>
        SessionWatcher.OpenAsync(http, sessionId, after: after, clientId: clientId, memberName: name, color: color, background: true);

    /// <summary>Waits (real time) until the marker at <paramref name="seq"/> arrived: everything appended before it has then arrived too.</summary>
    public static Task<WatchedEvent> WaitForMarkerAsync(this SessionWatcher watch, long seq) =>
        watch.WaitForAsync(e => e.Name == "test.marker" && e.Seq == seq, "the marker at seq " + seq.ToString(CultureInfo.InvariantCulture));

    /// <summary>Presence settings (and an instant simulated model).</summary>
    public static Dictionary<string, string?> Settings(double grace = 5, double ttl = 30, int? snapshotCap = null, int? coalesceMs = null, int? maxStateBytes = null, double tokensPerSecond = 0)
    {
        var settings = new Dictionary<string, string?>
        {
            ["AiStream:Presence:LeaveGraceSeconds"] = grace.ToString(CultureInfo.InvariantCulture),
            ["AiStream:Presence:TtlSeconds"] = ttl.ToString(CultureInfo.InvariantCulture),
            ["AiStream:Providers:sim:TokensPerSecond"] = tokensPerSecond.ToString(CultureInfo.InvariantCulture),
            ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
        };
        if (snapshotCap is { } cap)
        {
            settings["AiStream:Presence:SnapshotCap"] = cap.ToString(CultureInfo.InvariantCulture);
        }

        if (coalesceMs is { } coalesce)
        {
            settings["AiStream:Presence:UpdateCoalesceMilliseconds"] = coalesce.ToString(CultureInfo.InvariantCulture);
        }

        if (maxStateBytes is { } max)
        {
            settings["AiStream:Presence:MaxStateBytes"] = max.ToString(CultureInfo.InvariantCulture);
        }

        return settings;
    }

    /// <summary>A fake clock at an arbitrary fixed start.</summary>
    public static FakeTimeProvider NewClock() => new(new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero));

    /// <summary>
    /// Advances fake time by <paramref name="total"/> in steps, with a short real pause after each so that the work
    /// timer callbacks start (appends, flushes to sockets) gets to run.
    /// </summary>
    public static async Task AdvanceAsync(this FakeTimeProvider time, TimeSpan total, TimeSpan? step = null)
    {
        var by = step ?? TimeSpan.FromMilliseconds(500);
        for (var done = TimeSpan.Zero; done < total; done += by)
        {
            time.Advance(by < total - done ? by : total - done);
            await Task.Delay(10);
        }

        await Task.Delay(20);
    }

    /// <summary><c>GET /api/sessions/{id}/presence</c>; asserts 200.</summary>
    public static async Task<JsonObject> GetPresenceAsync(HttpClient http, string sessionId, int? limit = null)
    {
        using var response = await http.GetAsync($"api/sessions/{sessionId}/presence" + (limit is { } l ? "?limit=" + l.ToString(CultureInfo.InvariantCulture) : ""));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(200 == (int)response.StatusCode, $"GET presence answered {(int)response.StatusCode}: {body}");
        return (JsonObject)JsonNode.Parse(body)!;
    }

    public static List<JsonObject> Members(JsonObject presence) => presence["members"]!.AsArray().Select(m => (JsonObject)m!).ToList();

    public static JsonObject? Member(JsonObject presence, string id) => Members(presence).FirstOrDefault(m => m["id"]!.GetValue<string>() == id);

    /// <summary>The connection count GET presence reports for a member; null when it is not listed.</summary>
    public static async Task<int?> ConnectionsAsync(HttpClient http, string sessionId, string id) =>
        Member(await GetPresenceAsync(http, sessionId), id)?["connections"]!.GetValue<int>();

    /// <summary>Polls until GET presence reports <paramref name="connections"/> for a member (null: not listed).</summary>
    public static Task WaitForConnectionsAsync(HttpClient http, string sessionId, string id, int? connections) =>
        WaitUntilAsync(async () => await ConnectionsAsync(http, sessionId, id) == connections, $"{id} to have {connections?.ToString(CultureInfo.InvariantCulture) ?? "no"} connections");

    /// <summary><c>POST /api/sessions/{id}/presence/state?clientId=</c>.</summary>
    public static Task<HttpResponseMessage> PostStateAsync(HttpClient http, string sessionId, string clientId, JsonNode state) =>
        http.PostAsync($"api/sessions/{sessionId}/presence/state?clientId={Uri.EscapeDataString(clientId)}",
            new StringContent(state.ToJsonString(), Encoding.UTF8, "application/json"));

    /// <summary>Posts a state and asserts 204.</summary>
    public static async Task SetStateAsync(HttpClient http, string sessionId, string clientId, JsonNode state)
    {
        using var response = await PostStateAsync(http, sessionId, clientId, state);
        Assert.True(204 == (int)response.StatusCode, $"POST state answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    /// <summary>Publishes a CUSTOM marker and returns its position: a watcher that got it has got everything before it.</summary>
    public static async Task<long> MarkAsync(HttpClient http, string sessionId)
    {
        using var response = await http.PostAsJsonAsync($"api/sessions/{sessionId}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = "test.marker", ["value"] = null });
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(201 == (int)response.StatusCode, $"publish answered {(int)response.StatusCode}: {answer}");
        return answer!["seqs"]![0]!.GetValue<long>();
    }

    /// <summary>Publishes a marker and waits until <paramref name="watch"/> got it; returns the presence events seen by then.</summary>
    public static async Task<List<WatchedEvent>> SyncAsync(HttpClient http, string sessionId, SessionWatcher watch)
    {
        var seq = await MarkAsync(http, sessionId);
        await watch.WaitForMarkerAsync(seq);
        return watch.PresenceEvents;
    }

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Timed out waiting for " + what);
            }

            await Task.Delay(20);
        }
    }

    public static string Str(JsonNode? node) => node!.GetValue<string>();
}
