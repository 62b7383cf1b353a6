using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace AiStream.IntegrationTests.Scaleout;

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

    /// <summary>
    /// Opens a watch on <paramref name="http"/>'s node, read in the background: every event (presence, snapshot and gap
    /// notices included) is recorded in order, so tests wait for events instead of sleeping. Once the headers are back
    /// the node has subscribed it. <paramref name="clientId"/> (and <paramref name="memberName"/>) make it a given
    /// presence member; <paramref name="name"/> labels it in messages.
    /// </summary>
    public static Task<SessionWatcher> WatchAsync(HttpClient http, string sessionId, long? lastEventId = null, long? after = null,
        string? clientId = null, string? memberName = null, string? name = null) =>
        SessionWatcher.OpenAsync(http, sessionId, lastEventId, after, clientId, memberName, name: name, background: true);

    /// <summary>
    /// The events of a watch after its leading catch-up snapshot (all of them when it started with a replay), with later
    /// gap notices and their snapshots dropped too (see <see cref="WithoutSnapshots"/>).
    /// </summary>
    public static List<WatchedEvent> LiveEvents(this SessionWatcher watcher) => WithoutSnapshots(watcher.Events);

    /// <summary>Connects a hub client (with stateful reconnect) to <paramref name="node"/>, as member <paramref name="clientId"/> when given.</summary>
    public static Task<SessionHubClient> ConnectHubAsync(GatewayProcess node, string? clientId = null, string? memberName = null) =>
        SessionHubClient.ConnectAsync(node.BaseAddress, clientId, memberName, statefulReconnect: true);

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
    public static List<WatchedEvent> WithoutSnapshots(IEnumerable<WatchedEvent> events)
    {
        var result = new List<WatchedEvent>();
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
    public static void AssertNoGapNoDuplicate(IEnumerable<WatchedEvent> events, long? first = null, string? label = null)
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
    public static void AssertStrictlyIncreasing(IEnumerable<WatchedEvent> events, string? label = null)
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
    public static string RunText(IEnumerable<WatchedEvent> events, string? runId = null)
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
    public static string? SnapshotText(WatchedEvent snapshot, string? messageId = null)
    {
        Assert.Equal("MESSAGES_SNAPSHOT", snapshot.Type);
        var messages = snapshot.Data["messages"]!.AsArray().OfType<JsonObject>().Where(m => m["role"]?.GetValue<string>() == "assistant");
        var message = messageId is null ? messages.LastOrDefault() : messages.FirstOrDefault(m => m["id"]?.GetValue<string>() == messageId);
        return message?["content"]?.GetValue<string>();
    }

    /// <summary>The id of the first assistant message these events open.</summary>
    public static string AssistantMessageId(IEnumerable<WatchedEvent> events) =>
        events.First(e => e.Type == "TEXT_MESSAGE_START" && e.Str("role") == "assistant").MessageId!;

    /// <summary>Events other than presence joins, leaves and updates (for comparing run content).</summary>
    public static List<WatchedEvent> WithoutPresence(IEnumerable<WatchedEvent> events) => events.Where(e => !e.IsPresenceChange).ToList();
}
