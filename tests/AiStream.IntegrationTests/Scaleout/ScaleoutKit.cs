using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;

namespace AiStream.IntegrationTests.Scaleout;

/// <summary>One session event as a scale-out watcher received it: its <c>id:</c> line and its exact JSON text.</summary>
internal sealed record NodeEvent(long Id, string Json)
{
    public JsonObject Data { get; } = (JsonObject)JsonNode.Parse(Json)!;

    public string Type => Data["type"]!.GetValue<string>();

    public long Seq => Data["seq"]!.GetValue<long>();

    public string? Str(string name) => Data[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>The CUSTOM event's name, else null.</summary>
    public string? Name => Type == "CUSTOM" ? Str("name") : null;

    /// <summary>The CUSTOM event's value as an object, else null.</summary>
    public JsonObject? Value => Data["value"] as JsonObject;

    public string? RunId => Str("runId");

    public string? MessageId => Str("messageId");

    /// <summary>A <c>CUSTOM presence.join/leave/update</c> (not the snapshot's <c>presence.snapshot</c>).</summary>
    public bool IsPresence => Name is "presence.join" or "presence.leave" or "presence.update";

    /// <summary>The member id of a presence.join/leave/update, else null.</summary>
    public string? MemberId => IsPresence ? Value?["id"]?.GetValue<string>() : null;

    /// <summary>The notice a node writes when it could not fill a gap in its copy of the log (a snapshot follows).</summary>
    public bool IsGap => Name == "stream.gap";

    public bool IsRunEnd => Type is "RUN_FINISHED" or "RUN_ERROR";

    /// <summary>RUN_FINISHED's outcome type (an AG-UI 1.0 object, or a plain string).</summary>
    public string? OutcomeType => Data["outcome"] is JsonObject o ? o["type"]?.GetValue<string>() : Str("outcome");

    /// <summary>Why a run was cancelled, beside its outcome.</summary>
    public string? OutcomeReason => (Data["outcome"] as JsonObject)?["reason"]?.GetValue<string>() ?? Str("reason");

    public override string ToString() => Json;
}

/// <summary>
/// An SSE watch of <c>GET /api/sessions/{id}/events</c> on one node, read in the background: every event (presence,
/// snapshot and gap notices included) is recorded in order, so tests wait for events instead of sleeping. Disposing it
/// closes the connection, as a closed tab does.
/// </summary>
internal sealed class NodeWatcher : IDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly HttpResponseMessage _response;
    private readonly SseReader _reader;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<NodeEvent> _events = [];
    private readonly List<string> _comments = [];
    private readonly Task _pump;

    private NodeWatcher(string name, HttpResponseMessage response, Stream stream)
    {
        Name = name;
        _response = response;
        _reader = new SseReader(stream);
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>A label for messages (e.g. "A" or "B-resumed").</summary>
    public string Name { get; }

    public HttpResponseMessage Response => _response;

    /// <summary>True once the stream ended (the gateway closed it, the node died, or the watch was disposed).</summary>
    public bool Ended { get; private set; }

    /// <summary>Everything received so far, in order.</summary>
    public List<NodeEvent> Events
    {
        get
        {
            lock (_events)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>Comment lines (heartbeats, disconnect reasons) received so far.</summary>
    public List<string> Comments
    {
        get
        {
            lock (_events)
            {
                return [.. _comments];
            }
        }
    }

    /// <summary>The last <c>id:</c> received: what a reconnecting client sends as <c>Last-Event-ID</c>.</summary>
    public long? LastId => Events.LastOrDefault()?.Id;

    /// <summary>The position of the join snapshot, when the watch started with one.</summary>
    public long? SnapshotHead => Events.FirstOrDefault() is { Type: "MESSAGES_SNAPSHOT" } first ? first.Id : null;

    /// <summary>The events after the leading catch-up snapshot (all of them when the watch started with a replay).</summary>
    public List<NodeEvent> Live => ScaleoutKit.WithoutSnapshots(Events);

    /// <summary>
    /// Opens a watch on <paramref name="http"/>'s node. Once the headers are back the node has subscribed it.
    /// <paramref name="clientId"/> (and <paramref name="memberName"/>) make it a given presence member.
    /// </summary>
    public static async Task<NodeWatcher> OpenAsync(HttpClient http, string sessionId, long? lastEventId = null, long? after = null,
        string? clientId = null, string? memberName = null, string? name = null)
    {
        var query = new List<string>();
        if (after is { } a)
        {
            query.Add("after=" + a.ToString(CultureInfo.InvariantCulture));
        }

        if (clientId is not null)
        {
            query.Add("clientId=" + Uri.EscapeDataString(clientId));
        }

        if (memberName is not null)
        {
            query.Add("name=" + Uri.EscapeDataString(memberName));
        }

        var uri = $"api/sessions/{sessionId}/events" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Accept.ParseAdd("text/event-stream");
        if (lastEventId is { } last)
        {
            request.Headers.Add("Last-Event-ID", last.ToString(CultureInfo.InvariantCulture));
        }

        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if ((int)response.StatusCode != 200)
        {
            var body = await response.Content.ReadAsStringAsync();
            response.Dispose();
            Assert.Fail($"watch on {http.BaseAddress} answered {(int)response.StatusCode}: {body}");
        }

        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        return new NodeWatcher(name ?? http.BaseAddress?.Authority ?? "watch", response, await response.Content.ReadAsStreamAsync());
    }

    /// <summary>Waits for the first event, from the start of the watch, that matches; fails with what was seen.</summary>
    public async Task<NodeEvent> WaitForAsync(Func<NodeEvent, bool> match, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            if (Events.FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (Ended || DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{(Ended ? "The watch " + Name + " ended" : "Timed out on watch " + Name)} waiting for {what}; seen:\n{string.Join("\n", Events)}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits for the RUN_FINISHED or RUN_ERROR of <paramref name="runId"/>.</summary>
    public Task<NodeEvent> WaitForRunEndAsync(string runId, TimeSpan? timeout = null) =>
        WaitForAsync(e => e.IsRunEnd && e.RunId == runId, "the end of run " + runId, timeout);

    /// <summary>Waits until the event at position <paramref name="seq"/> (or a later one) arrived.</summary>
    public Task<NodeEvent> WaitForSeqAsync(long seq, TimeSpan? timeout = null) =>
        WaitForAsync(e => e.Seq >= seq, "position " + seq.ToString(CultureInfo.InvariantCulture), timeout);

    /// <summary>Waits until at least <paramref name="count"/> events matching <paramref name="match"/> arrived.</summary>
    public async Task<List<NodeEvent>> WaitForCountAsync(Func<NodeEvent, bool> match, int count, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            var found = Events.Where(match).ToList();
            if (found.Count >= count)
            {
                return found;
            }

            if (Ended || DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{(Ended ? "The watch " + Name + " ended" : "Timed out on watch " + Name)} waiting for {count} x {what} (have {found.Count}); seen:\n{string.Join("\n", Events)}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits until the gateway (or a dead node) ended the stream.</summary>
    public async Task WaitForEndAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (!Ended)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"The watch {Name} did not end; seen:\n{string.Join("\n", Events)}");
            }

            await Task.Delay(10);
        }
    }

    private async Task PumpAsync()
    {
        try
        {
            while (await _reader.NextEventAsync(_stop.Token) is { } lines)
            {
                var id = lines.FirstOrDefault(l => l.StartsWith("id: ", StringComparison.Ordinal));
                var data = lines.FirstOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal));
                lock (_events)
                {
                    _comments.AddRange(lines.Where(l => l.StartsWith(':')));
                    if (data is not null && id is not null)
                    {
                        _events.Add(new NodeEvent(long.Parse(id["id: ".Length..], CultureInfo.InvariantCulture), data["data: ".Length..]));
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or HttpRequestException)
        {
            // Closed by the test, by the gateway, or the node died.
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

/// <summary>
/// A .NET SignalR client of <c>/hubs/sessions</c> on one node, recording every <c>Event(sessionId, event)</c> per
/// session (the exact JSON text it received), with the same waiting helpers as <see cref="NodeWatcher"/>.
/// </summary>
internal sealed class HubWatcher : IAsyncDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);
    private readonly List<(string SessionId, NodeEvent Event)> _received = [];

    private HubWatcher(HubConnection connection) => Connection = connection;

    public HubConnection Connection { get; }

    /// <summary>Everything received for <paramref name="sessionId"/> so far, in order.</summary>
    public List<NodeEvent> Events(string sessionId)
    {
        lock (_received)
        {
            return _received.Where(r => r.SessionId == sessionId).Select(r => r.Event).ToList();
        }
    }

    /// <summary>Connects to <paramref name="node"/>'s hub, as member <paramref name="clientId"/> when given.</summary>
    public static async Task<HubWatcher> ConnectAsync(GatewayProcess node, string? clientId = null, string? memberName = null)
    {
        var query = new List<string>();
        if (clientId is not null)
        {
            query.Add("clientId=" + Uri.EscapeDataString(clientId));
        }

        if (memberName is not null)
        {
            query.Add("name=" + Uri.EscapeDataString(memberName));
        }

        var url = new Uri(node.BaseAddress, "hubs/sessions" + (query.Count > 0 ? "?" + string.Join('&', query) : ""));
        var connection = new HubConnectionBuilder().WithUrl(url).WithStatefulReconnect().Build();
        var watcher = new HubWatcher(connection);
        connection.On<string, JsonElement>("Event", (sessionId, e) =>
        {
            var json = e.GetRawText();
            var seq = JsonNode.Parse(json)!["seq"]!.GetValue<long>();
            lock (watcher._received)
            {
                watcher._received.Add((sessionId, new NodeEvent(seq, json)));
            }
        });
        try
        {
            await connection.StartAsync();
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        return watcher;
    }

    /// <summary><c>Join(sessionId, afterSeq)</c>; returns the answer (<c>{sessionId, headSeq, snapshot}</c>).</summary>
    public async Task<JsonObject> JoinAsync(string sessionId, long? afterSeq = null)
    {
        var answer = await Connection.InvokeAsync<JsonElement>("Join", sessionId, afterSeq);
        return (JsonObject)JsonNode.Parse(answer.GetRawText())!;
    }

    public async Task<NodeEvent> WaitForAsync(string sessionId, Func<NodeEvent, bool> match, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            if (Events(sessionId).FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out on the hub waiting for {what}; received:\n{string.Join("\n", Events(sessionId))}");
            }

            await Task.Delay(10);
        }
    }

    public Task<NodeEvent> WaitForRunEndAsync(string sessionId, string runId, TimeSpan? timeout = null) =>
        WaitForAsync(sessionId, e => e.IsRunEnd && e.RunId == runId, "the end of run " + runId, timeout);

    public ValueTask DisposeAsync() => Connection.DisposeAsync();
}

/// <summary>Starting gateway nodes against one Redis, and the calls and assertions the scale-out tests share.</summary>
internal static class ScaleoutKit
{
    /// <summary>How often nodes renew liveness and check for missed events in tests (seconds).</summary>
    public const double MaintenanceSeconds = 0.2;

    /// <summary>After this long without renewal a node is dead in tests (seconds).</summary>
    public const double NodeTimeoutSeconds = 2;

    /// <summary>Presence connection TTL in tests (seconds).</summary>
    public const double PresenceTtlSeconds = 3;

    /// <summary>
    /// The settings of a scale-out node: Redis, its node id, fast maintenance, a 2 s node timeout, a 3 s presence TTL,
    /// no leave grace, and a fast simulated model (200 tokens/s, 5 ms to the first token).
    /// </summary>
    public static Dictionary<string, string?> NodeSettings(string redis, string nodeId) => new()
    {
        ["ConnectionStrings:Redis"] = redis,
        ["AiStream:Scaleout:NodeId"] = nodeId,
        ["AiStream:Scaleout:MaintenanceSeconds"] = MaintenanceSeconds.ToString(CultureInfo.InvariantCulture),
        ["AiStream:Scaleout:NodeTimeoutSeconds"] = NodeTimeoutSeconds.ToString(CultureInfo.InvariantCulture),
        ["AiStream:Presence:TtlSeconds"] = PresenceTtlSeconds.ToString(CultureInfo.InvariantCulture),
        ["AiStream:Presence:LeaveGraceSeconds"] = "0",
        ["AiStream:Providers:sim:TokensPerSecond"] = "200",
        ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "5",
    };

    /// <summary>The simulated model at a given pace (merge into <c>extra</c>).</summary>
    public static Dictionary<string, string?> Sim(double tokensPerSecond, int timeToFirstTokenMs = 5) => new()
    {
        ["AiStream:Providers:sim:TokensPerSecond"] = tokensPerSecond.ToString(CultureInfo.InvariantCulture),
        ["AiStream:Providers:sim:TimeToFirstTokenMs"] = timeToFirstTokenMs.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>Another simulated model <paramref name="name"/> (its own provider of the same name) at a given pace.</summary>
    public static Dictionary<string, string?> SimModel(string name, double tokensPerSecond, int timeToFirstTokenMs = 5) => new()
    {
        [$"AiStream:Providers:{name}:Type"] = "Simulated",
        [$"AiStream:Providers:{name}:TokensPerSecond"] = tokensPerSecond.ToString(CultureInfo.InvariantCulture),
        [$"AiStream:Providers:{name}:TimeToFirstTokenMs"] = timeToFirstTokenMs.ToString(CultureInfo.InvariantCulture),
        [$"AiStream:Models:{name}:Provider"] = name,
    };

    /// <summary>Model <paramref name="model"/> on an OpenAI-compatible provider <paramref name="provider"/> at <paramref name="baseUrl"/> (a <see cref="FakeUpstream"/>), no retries.</summary>
    public static Dictionary<string, string?> UpstreamModel(string baseUrl, string model, string provider) => new()
    {
        [$"AiStream:Providers:{provider}:Type"] = "OpenAICompatible",
        [$"AiStream:Providers:{provider}:Endpoint"] = baseUrl,
        [$"AiStream:Providers:{provider}:ApiKey"] = "sk-test",
        [$"AiStream:Providers:{provider}:MaxRetries"] = "0",
        [$"AiStream:Providers:{provider}:RetryBaseDelayMs"] = "10",
        [$"AiStream:Models:{model}:Provider"] = provider,
        [$"AiStream:Models:{model}:UpstreamModel"] = model + "-upstream",
    };

    /// <summary>Several settings dictionaries merged, later ones winning.</summary>
    public static Dictionary<string, string?> Merge(params IDictionary<string, string?>[] parts)
    {
        var merged = new Dictionary<string, string?>();
        foreach (var part in parts)
        {
            foreach (var (key, value) in part)
            {
                merged[key] = value;
            }
        }

        return merged;
    }

    /// <summary>Starts a gateway process on <paramref name="redis"/> as node <paramref name="nodeId"/>; <paramref name="extra"/> overrides or adds settings (null removes one).</summary>
    public static Task<GatewayProcess> StartNodeAsync(string redis, string nodeId, IDictionary<string, string?>? extra = null, int? port = null)
    {
        var settings = NodeSettings(redis, nodeId);
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        return GatewayProcess.StartAsync(settings, port);
    }

    /// <summary>Starts several nodes at once (in parallel: a node takes a second or two to start).</summary>
    public static async Task<GatewayProcess[]> StartNodesAsync(string redis, IReadOnlyList<string> nodeIds, IDictionary<string, string?>? extra = null)
    {
        var starts = nodeIds.Select(id => StartNodeAsync(redis, id, extra)).ToList();
        try
        {
            return await Task.WhenAll(starts);
        }
        catch
        {
            foreach (var start in starts.Where(s => s.IsCompletedSuccessfully))
            {
                await start.Result.DisposeAsync();
            }

            throw;
        }
    }

    /// <summary>
    /// A client of the node that closes a connection as soon as its response is disposed (as a killed client would),
    /// with a 30 s timeout per request (an SSE watch's body is not bounded by it once the headers are back).
    /// </summary>
    public static HttpClient Client(this GatewayProcess node) =>
        new(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = node.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };

    public static string NewSessionId() => "x-" + Guid.NewGuid().ToString("N")[..12];

    /// <summary>Starts a run with one user message; asserts 202 and returns the run id.</summary>
    public static async Task<string> StartRunAsync(HttpClient http, string sessionId, string content = "hi", string? model = null)
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
        };
        if (model is not null)
        {
            body["model"] = model;
        }

        using var response = await http.PostAsJsonAsync($"api/sessions/{sessionId}/runs", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(202 == (int)response.StatusCode, $"start run on {http.BaseAddress} answered {(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!["runId"]!.GetValue<string>();
    }

    /// <summary>POSTs one event or a batch; returns the status and the answer's JSON (null when not JSON).</summary>
    public static async Task<(int Status, JsonObject? Body, HttpResponseMessage Response)> PostEventsAsync(HttpClient http, string sessionId, JsonNode body, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/sessions/{sessionId}/events")
        {
            Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"),
        };
        if (idempotencyKey is not null)
        {
            request.Headers.Add("Idempotency-Key", idempotencyKey);
        }

        var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        JsonObject? json = null;
        try
        {
            json = JsonNode.Parse(text) as JsonObject;
        }
        catch (System.Text.Json.JsonException)
        {
        }

        return ((int)response.StatusCode, json, response);
    }

    /// <summary>Publishes a <c>CUSTOM</c> marker; asserts 201 and returns its position.</summary>
    public static async Task<long> MarkAsync(HttpClient http, string sessionId, string name = "test.marker")
    {
        var (status, body, response) = await PostEventsAsync(http, sessionId, new JsonObject { ["type"] = "CUSTOM", ["name"] = name, ["value"] = null });
        response.Dispose();
        Assert.True(status == 201, $"publish on {http.BaseAddress} answered {status}: {body}");
        return body!["seqs"]![0]!.GetValue<long>();
    }

    /// <summary><c>GET /api/sessions/{id}</c>; asserts 200.</summary>
    public static async Task<JsonObject> InfoAsync(HttpClient http, string sessionId)
    {
        using var response = await http.GetAsync($"api/sessions/{sessionId}");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(200 == (int)response.StatusCode, $"GET session answered {(int)response.StatusCode}: {text}");
        return (JsonObject)JsonNode.Parse(text)!;
    }

    public static List<string> ActiveRuns(JsonObject info) => info["activeRuns"]!.AsArray().Select(r => r!.GetValue<string>()).ToList();

    /// <summary><c>GET /api/sessions/{id}/presence</c>; asserts 200.</summary>
    public static async Task<JsonObject> PresenceAsync(HttpClient http, string sessionId)
    {
        using var response = await http.GetAsync($"api/sessions/{sessionId}/presence");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(200 == (int)response.StatusCode, $"GET presence answered {(int)response.StatusCode}: {text}");
        return (JsonObject)JsonNode.Parse(text)!;
    }

    /// <summary>
    /// Waits until the node's <c>/readyz</c> answers 200: besides Redis, readiness waits for the tokenizer vocabulary,
    /// which loads in the background for a moment after the process started.
    /// </summary>
    public static Task WaitUntilReadyAsync(HttpClient http, TimeSpan? timeout = null) =>
        WaitUntilAsync(async () =>
        {
            using var ready = await http.GetAsync("readyz");
            return ready.StatusCode == System.Net.HttpStatusCode.OK;
        }, $"{http.BaseAddress}readyz to answer 200", timeout ?? TimeSpan.FromSeconds(15));

    /// <summary>Polls <paramref name="condition"/> until it holds; for state that has no event to wait for.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Timed out waiting for " + what);
            }

            await Task.Delay(25);
        }
    }

    /// <summary>
    /// Drops catch-up snapshots: the leading <c>MESSAGES_SNAPSHOT</c> and, after a <c>stream.gap</c> notice, the
    /// notice and the snapshot that follows it, together with the events that share the snapshot's position (state,
    /// presence list, runs in progress). What is left is the events that each hold their own position.
    /// </summary>
    public static List<NodeEvent> WithoutSnapshots(IEnumerable<NodeEvent> events)
    {
        var result = new List<NodeEvent>();
        long? snapshotAt = null;
        foreach (var e in events)
        {
            if (e.Type == "MESSAGES_SNAPSHOT" || e.IsGap)
            {
                snapshotAt = e.Seq;
                continue;
            }

            if (snapshotAt == e.Seq)
            {
                continue;
            }

            snapshotAt = null;
            result.Add(e);
        }

        return result;
    }

    /// <summary>
    /// Asserts positions are strictly increasing (no duplicate, nothing going back) and, unless a <c>stream.gap</c>
    /// notice says otherwise, contiguous: each is the previous plus one. Snapshots are skipped (see
    /// <see cref="WithoutSnapshots"/>); a gap notice (at the head it resumes from, never below what came before) and
    /// the snapshot after it restart the count.
    /// </summary>
    public static void AssertNoGapNoDuplicate(IEnumerable<NodeEvent> events, long? first = null, string? label = null)
    {
        var all = events.ToList();
        long? previous = first is { } f ? f - 1 : null;
        long? snapshotAt = null;
        var allowJump = false;
        foreach (var e in all)
        {
            if (e.Type == "MESSAGES_SNAPSHOT")
            {
                snapshotAt = e.Seq;
                Assert.True(previous is null || e.Seq >= previous, $"{label}: snapshot at {e.Seq} goes back before {previous}:\n{string.Join("\n", all)}");
                previous = e.Seq;
                continue;
            }

            if (snapshotAt == e.Seq)
            {
                continue;
            }

            snapshotAt = null;
            if (previous is { } p)
            {
                if (e.IsGap)
                {
                    Assert.True(e.Seq >= p, $"{label}: gap notice at {e.Seq} goes back before {p}:\n{string.Join("\n", all)}");
                }
                else if (allowJump)
                {
                    Assert.True(e.Seq > p, $"{label}: position {e.Seq} after {p} is not increasing:\n{string.Join("\n", all)}");
                }
                else
                {
                    Assert.True(e.Seq == p + 1, $"{label}: position {e.Seq} after {p} (expected {p + 1}):\n{string.Join("\n", all)}");
                }
            }

            allowJump = e.IsGap;
            previous = e.Seq;
        }
    }

    /// <summary>Asserts positions are strictly increasing, snapshots and gap notices skipped, gaps allowed.</summary>
    public static void AssertStrictlyIncreasing(IEnumerable<NodeEvent> events, string? label = null)
    {
        var live = WithoutSnapshots(events);
        for (var i = 1; i < live.Count; i++)
        {
            Assert.True(live[i].Seq > live[i - 1].Seq, $"{label}: position {live[i].Seq} after {live[i - 1].Seq}:\n{string.Join("\n", live)}");
        }
    }

    /// <summary>
    /// The assistant text of a run as a client renders it from these events: the messages a role-assistant
    /// <c>TEXT_MESSAGE_START</c> opened between the run's <c>RUN_STARTED</c> and its end (or all assistant messages
    /// when <paramref name="runId"/> is null), their <c>TEXT_MESSAGE_CONTENT</c> deltas concatenated. A
    /// <c>MESSAGES_SNAPSHOT</c> replaces the conversation as AG-UI clients do (messages it does not list are dropped),
    /// and a snapshot's <c>TEXT_MESSAGE_START</c> restarts a message, so a watch with a (correct) snapshot in the
    /// middle renders the same text as one without.
    /// </summary>
    public static string RunText(IEnumerable<NodeEvent> events, string? runId = null)
    {
        var texts = new Dictionary<string, StringBuilder>();
        var order = new List<string>();
        var inRun = runId is null;
        foreach (var e in events)
        {
            switch (e.Type)
            {
                case "RUN_STARTED" when e.RunId == runId:
                    inRun = true;
                    break;
                case "RUN_FINISHED" or "RUN_ERROR" when runId is not null && e.RunId == runId:
                    inRun = false;
                    break;
                case "MESSAGES_SNAPSHOT":
                    // The snapshot is the conversation now: what it lists takes its content, what it leaves out is gone
                    // (an in-progress message comes back with the TEXT_MESSAGE_START/CONTENT that follow the snapshot).
                    var listed = new Dictionary<string, string>();
                    foreach (var m in e.Data["messages"]!.AsArray().OfType<JsonObject>())
                    {
                        if (m["id"]?.GetValue<string>() is { } id)
                        {
                            listed[id] = m["content"] is JsonValue c && c.TryGetValue<string>(out var s) ? s : string.Empty;
                        }
                    }

                    foreach (var id in order.ToList())
                    {
                        if (listed.TryGetValue(id, out var content))
                        {
                            texts[id].Clear().Append(content);
                        }
                        else
                        {
                            texts.Remove(id);
                            order.Remove(id);
                        }
                    }

                    break;
                case "TEXT_MESSAGE_START" when e.Str("role") == "assistant" && e.MessageId is { } started:
                    if (texts.TryGetValue(started, out var existing))
                    {
                        existing.Clear();
                    }
                    else if (inRun)
                    {
                        texts[started] = new StringBuilder();
                        order.Add(started);
                    }

                    break;
                case "TEXT_MESSAGE_CONTENT" when e.MessageId is { } id && texts.TryGetValue(id, out var text):
                    text.Append(e.Str("delta"));
                    break;
            }
        }

        return string.Concat(order.Select(id => texts[id].ToString()));
    }

    /// <summary>The content of an assistant message in a <c>MESSAGES_SNAPSHOT</c> (the last assistant one when <paramref name="messageId"/> is null).</summary>
    public static string? SnapshotText(NodeEvent snapshot, string? messageId = null)
    {
        Assert.Equal("MESSAGES_SNAPSHOT", snapshot.Type);
        var messages = snapshot.Data["messages"]!.AsArray().OfType<JsonObject>().Where(m => m["role"]?.GetValue<string>() == "assistant");
        var message = messageId is null ? messages.LastOrDefault() : messages.FirstOrDefault(m => m["id"]?.GetValue<string>() == messageId);
        return message?["content"]?.GetValue<string>();
    }

    /// <summary>The id of the first assistant message these events open.</summary>
    public static string AssistantMessageId(IEnumerable<NodeEvent> events) =>
        events.First(e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant").MessageId!;

    /// <summary>Events other than presence joins, leaves and updates (for comparing run content).</summary>
    public static List<NodeEvent> WithoutPresence(IEnumerable<NodeEvent> events) => events.Where(e => !e.IsPresence).ToList();
}
