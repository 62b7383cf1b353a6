using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Time.Testing;

namespace AiStream.IntegrationTests.Presence;

/// <summary>One session event as a watcher received it.</summary>
internal sealed record PresenceEvent(long Id, string Json)
{
    public JsonObject Data { get; } = (JsonObject)JsonNode.Parse(Json)!;

    public string Type => Data["type"]!.GetValue<string>();

    public long Seq => Data["seq"]!.GetValue<long>();

    /// <summary>The CUSTOM event's name, else null.</summary>
    public string? Name => Type == "CUSTOM" ? Data["name"]?.GetValue<string>() : null;

    /// <summary>The CUSTOM event's value as an object, else null.</summary>
    public JsonObject? Value => Data["value"] as JsonObject;

    /// <summary>The member id of a presence.join/leave/update, else null.</summary>
    public string? MemberId => Name is "presence.join" or "presence.leave" or "presence.update" ? Value?["id"]?.GetValue<string>() : null;

    public bool Is(string name, string memberId) => Name == name && MemberId == memberId;

    public override string ToString() => $"{Id} {Json}";
}

/// <summary>
/// An SSE watch of a session as a given client (<c>?clientId=&amp;name=&amp;color=</c>), read in the background so a
/// test can advance fake time and look at what arrived so far. Disposing it closes its connection.
/// </summary>
internal sealed class PresenceWatch : IDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly SseReader _reader;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<PresenceEvent> _seen = [];
    private readonly Task _pump;

    private PresenceWatch(HttpResponseMessage response, Stream stream)
    {
        _response = response;
        _reader = new SseReader(stream);
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>The client id the gateway answered in <c>X-AiStream-Client-Id</c>.</summary>
    public string ClientId => _response.Headers.GetValues("X-AiStream-Client-Id").Single();

    /// <summary>True once the gateway ended the stream (or the connection failed).</summary>
    public bool Ended { get; private set; }

    /// <summary>Everything received so far, in order.</summary>
    public List<PresenceEvent> Seen
    {
        get
        {
            lock (_seen)
            {
                return [.. _seen];
            }
        }
    }

    /// <summary>Presence events (join/leave/update) received so far, in order.</summary>
    public List<PresenceEvent> PresenceEvents => Seen.Where(e => e.MemberId is not null).ToList();

    public static string Url(string sessionId, string? clientId, string? name = null, string? color = null, long? after = null)
    {
        var query = new List<string>();
        if (clientId is not null)
        {
            query.Add("clientId=" + Uri.EscapeDataString(clientId));
        }

        if (name is not null)
        {
            query.Add("name=" + Uri.EscapeDataString(name));
        }

        if (color is not null)
        {
            query.Add("color=" + Uri.EscapeDataString(color));
        }

        if (after is { } a)
        {
            query.Add("after=" + a.ToString(CultureInfo.InvariantCulture));
        }

        return $"api/sessions/{sessionId}/events" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
    }

    /// <summary>Opens a watch; once the headers are back the gateway has subscribed it and made the client present.</summary>
    public static async Task<PresenceWatch> OpenAsync(HttpClient http, string sessionId, string? clientId, string? name = null, string? color = null, long? after = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(sessionId, clientId, name, color, after));
        request.Headers.Accept.ParseAdd("text/event-stream");
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if ((int)response.StatusCode != 200)
        {
            Assert.Fail($"watch answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        }

        return new PresenceWatch(response, await response.Content.ReadAsStreamAsync());
    }

    /// <summary>Waits (real time) for the first event, from the start of the watch, that matches.</summary>
    public async Task<PresenceEvent> WaitForAsync(Func<PresenceEvent, bool> match, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            if (Seen.FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (Ended || DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{(Ended ? "The watch ended" : "Timed out")} waiting for {what}; seen:\n{string.Join("\n", Seen)}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits until the event at <paramref name="seq"/> arrived: everything appended before it has then arrived too.</summary>
    public Task<PresenceEvent> WaitForSeqAsync(long seq) => WaitForAsync(e => e.Name == "test.marker" && e.Seq == seq, "the marker at seq " + seq.ToString(CultureInfo.InvariantCulture));

    private async Task PumpAsync()
    {
        try
        {
            while (await _reader.NextEventAsync(_stop.Token) is { } lines)
            {
                var id = lines.FirstOrDefault(l => l.StartsWith("id: ", StringComparison.Ordinal));
                var data = lines.FirstOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal));
                if (data is null || id is null)
                {
                    continue;
                }

                var e = new PresenceEvent(long.Parse(id["id: ".Length..], CultureInfo.InvariantCulture), data["data: ".Length..]);
                lock (_seen)
                {
                    _seen.Add(e);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or HttpRequestException)
        {
            // Closed by the test or by the gateway.
        }
        finally
        {
            Ended = true;
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _response.Dispose();
        _pump.Wait(TimeSpan.FromSeconds(5));
        _reader.Dispose();
        _stop.Dispose();
    }
}

/// <summary>A .NET SignalR client of <c>/hubs/sessions</c> as a given client, recording every <c>Event(sessionId, event)</c>.</summary>
internal sealed class HubMember : IAsyncDisposable
{
    private readonly List<PresenceEvent> _received = [];

    private HubMember(HubConnection connection) => Connection = connection;

    public HubConnection Connection { get; }

    public List<PresenceEvent> Received
    {
        get
        {
            lock (_received)
            {
                return [.. _received];
            }
        }
    }

    public static async Task<HubMember> ConnectAsync(Uri baseAddress, string clientId, string name)
    {
        var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(baseAddress, $"hubs/sessions?clientId={Uri.EscapeDataString(clientId)}&name={Uri.EscapeDataString(name)}"))
            .Build();
        var member = new HubMember(connection);
        connection.On<string, JsonElement>("Event", (_, e) =>
        {
            var json = e.GetRawText();
            var seq = JsonNode.Parse(json)!["seq"]!.GetValue<long>();
            lock (member._received)
            {
                member._received.Add(new PresenceEvent(seq, json));
            }
        });
        await connection.StartAsync();
        return member;
    }

    public async Task<PresenceEvent> WaitForAsync(Func<PresenceEvent, bool> match, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            if (Received.FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting on the hub for {what}; received:\n{string.Join("\n", Received)}");
            }

            await Task.Delay(10);
        }
    }

    public ValueTask DisposeAsync() => Connection.DisposeAsync();
}

/// <summary>Calls on the presence API, settings, and fake-time stepping.</summary>
internal static class PresenceApi
{
    /// <summary>A client that closes a connection as soon as its response is disposed, as a closed tab does.</summary>
    public static HttpClient Client(this GatewayFactory gateway) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = gateway.Start(), Timeout = TimeSpan.FromSeconds(60) };

    public static string NewSessionId() => "p-" + Guid.NewGuid().ToString("N")[..12];

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
    public static async Task<List<PresenceEvent>> SyncAsync(HttpClient http, string sessionId, PresenceWatch watch)
    {
        var seq = await MarkAsync(http, sessionId);
        await watch.WaitForSeqAsync(seq);
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
