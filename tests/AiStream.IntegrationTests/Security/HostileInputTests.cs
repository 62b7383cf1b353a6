using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Sessions;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Security;

/// <summary>
/// The reproductions of the security issue's "inputs that take it down today", each now a clear 4xx (or harmless),
/// with the gateway alive and its session still usable afterwards.
/// </summary>
public sealed class HostileInputTests
{
    private static async Task<(HttpStatusCode Status, JsonNode? Body)> PostRawAsync(HttpClient http, string path, string json)
    {
        using var response = await http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length > 0 && response.Content.Headers.ContentType?.MediaType?.Contains("json", StringComparison.Ordinal) == true ? JsonNode.Parse(text) : null);
    }

    private static string Deep(int depth) => string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth);

    private static string DeepPath(int depth) => string.Concat(Enumerable.Repeat("/a", depth));

    [Theory]
    [InlineData(60)] // the reproduction: refused at the snapshot already
    [InlineData(10)] // a snapshot within the limit, then copies that double its depth
    public async Task CopiesThatDoubleTheStatesDepth_AreRefusedBeforeStoring_AndTheSessionStaysUsable(int depth)
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        var copies = string.Join(",", Enumerable.Repeat($$"""{"op":"copy","from":"","path":"{{DeepPath(depth - 1)}}/b"}""", 30));
        var batch = $$"""[{"type":"STATE_SNAPSHOT","snapshot":{{Deep(depth)}}},{"type":"STATE_DELTA","delta":[{{copies}}]}]""";

        var (status, problem) = await PostRawAsync(http, $"api/sessions/{session}/events", batch);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("state_limit", problem!["error"]!["code"]!.GetValue<string>());
        Assert.Contains("MaxStateDepth", problem["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        // Nothing of the batch was stored, and the session still watches and takes state.
        Assert.Equal(0, (await InfoAsync(http, session))["headSeq"]?.GetValue<long>() ?? 0);
        await PublishAsync(http, session, new JsonObject { ["type"] = "STATE_SNAPSHOT", ["snapshot"] = new JsonObject { ["ok"] = true } });
        using var watcher = await SessionWatcher.OpenAsync(http, session);
        var first = await watcher.ReadCountAsync(2);
        Assert.Equal("STATE_SNAPSHOT", first[1].Type);
        Assert.True(first[1].Data["snapshot"]!["ok"]!.GetValue<bool>());
    }

    [Fact]
    public async Task CopiesFromTheRootThatDoubleTheStatesSize_AreRefusedAtTheSizeLimit()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var session = NewSessionId();
        await PublishAsync(http, session, new JsonObject { ["type"] = "STATE_SNAPSHOT", ["snapshot"] = new JsonObject { ["x"] = new string('x', 1000) } });
        var copies = string.Join(",", Enumerable.Range(0, 24).Select(i => $$"""{"op":"copy","from":"","path":"/c{{i}}"}"""));
        var (status, problem) = await PostRawAsync(http, $"api/sessions/{session}/events", $$"""{"type":"STATE_DELTA","delta":[{{copies}}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("MaxStateBytes", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        // A delta that stays within the limit is applied.
        var (ok, _) = await PostRawAsync(http, $"api/sessions/{session}/events", """{"type":"STATE_DELTA","delta":[{"op":"copy","from":"","path":"/c0"}]}""");
        Assert.Equal(HttpStatusCode.Created, ok);
    }

    [Fact]
    public async Task OneEnormousWordInAPrompt_IsCountedQuickly()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var clock = Stopwatch.StartNew();
        using var response = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "sim",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = new string('x', 200_000) }),
        });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var usage = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["usage"]!;
        Assert.InRange(usage["prompt_tokens"]!.GetValue<int>(), 200_000 / 128, 200_000);
        // It took 24 s before counting was bounded; the point of this test is that it no longer does.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task LargePublishes_AreTrimmedFromTheLogByBytes_AndNewSessionsStopAtTheNodesMaximum()
    {
        var settings = Sim().With("AiStream:Sessions:MaxLogBytes", 256 * 1024).With("AiStream:Sessions:MaxSessions", 3);
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Client();
        var session = NewSessionId();
        for (var i = 0; i < 10; i++)
        {
            await PublishAsync(http, session, Custom("big", new string('b', 100_000)));
        }

        // Resuming from the first event is no longer a replay: the log kept only the newest ~256 KiB.
        using var watcher = await SessionWatcher.OpenAsync(http, session, after: 0);
        Assert.Equal("MESSAGES_SNAPSHOT", (await watcher.NextAsync())!.Type);

        await PublishAsync(http, NewSessionId(), Custom("x", 1));
        await PublishAsync(http, NewSessionId(), Custom("x", 1));
        using var refused = await http.PostAsJsonAsync($"api/sessions/{NewSessionId()}/events", Custom("x", 1));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Equal("too_many_sessions", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        using var refusedWatch = await http.GetAsync($"api/sessions/{NewSessionId()}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refusedWatch.StatusCode);

        // Sessions the node already holds keep working.
        await PublishAsync(http, session, Custom("still", 1));
    }

    [Fact]
    public async Task LargePublishes_WithRedis_TheStreamIsTrimmedByBytesToo_SoANodeLoadingItReadsABoundedLog()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = Scaleout.ScaleoutKit.Sim(tokensPerSecond: 0);
        settings["AiStream:Sessions:MaxLogBytes"] = (256 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var node = await Scaleout.ScaleoutKit.StartNodeAsync(redis.ConnectionString, "A", settings);
        using var http = Scaleout.ScaleoutKit.Client(node);
        var session = NewSessionId();
        for (var i = 0; i < 10; i++)
        {
            await PublishAsync(http, session, Custom("big", new string('b', 100_000)));
        }

        // 1 MB published: the stream keeps the newest entries within 256 KiB (two of 100 KB), not all ten.
        var length = (long)Scaleout.RespReply.Parse(await redis.CommandAsync("XLEN", $"aistream:{{{session}}}:log"))!;
        Assert.InRange(length, 1, 2);
        var bytes = long.Parse((string)Scaleout.RespReply.Parse(await redis.CommandAsync("GET", $"aistream:{{{session}}}:lb"))!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(bytes, 100_000, 256 * 1024);

        // A second node loads the session from that bounded stream: a resume from the start is a snapshot, then the newest.
        await using var other = await Scaleout.ScaleoutKit.StartNodeAsync(redis.ConnectionString, "B", settings);
        using var onOther = Scaleout.ScaleoutKit.Client(other);
        using var watcher = await SessionWatcher.OpenAsync(onOther, session, after: 0);
        Assert.Equal("MESSAGES_SNAPSHOT", (await watcher.NextAsync())!.Type);
        await PublishAsync(http, session, Custom("still", 1));
    }

    [Theory]
    [InlineData("api/sessions/s-ok/events?clientId=abc%0A")]
    [InlineData("api/sessions/abc%0A/events")]
    [InlineData("api/sessions/abc%0A")]
    public async Task IdsWithATrailingNewline_AreRefusedWith400(string path)
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        using var response = await http.GetAsync(path, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task ACookieIdWithATrailingNewline_IsIgnored_NotAnError()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/sessions/{NewSessionId()}/events");
        request.Headers.Add("Cookie", "aistream_cid=ab%0A");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("anon-", response.Headers.GetValues("X-AiStream-Client-Id").Single(), StringComparison.Ordinal);
    }

    public static TheoryData<string, string> LoneSurrogates() => new()
    {
        { "api/sessions/s-lone/events", """{"type":"CUSTOM","name":"x","value":"\ud800"}""" },
        { "api/sessions/s-lone/runs", """{"messages":[{"role":"user","content":"\udfff"}]}""" },
        { "api/sessions/s-lone/presence/state?clientId=u1", """{"typing":"\ud800"}""" },
        { "agui", """{"threadId":"s-lone","messages":[{"id":"m","role":"user","content":"a\ud800b"}]}""" },
        { "v1/chat/completions", """{"model":"sim","messages":[{"role":"user","content":"\ud800"}]}""" },
        { "v1/chat/completions", """{"model":"sim","messages":[{"role":"user","content":"hi"}],"metadata":{"\ud800":"key"}}""" },
    };

    [Theory]
    [MemberData(nameof(LoneSurrogates))]
    public async Task ALoneSurrogateInAnyJsonBody_Is400(string path, string body)
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var (status, problem) = await PostRawAsync(http, path, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("surrogate", problem!["detail"]!.GetValue<string>(), StringComparison.Ordinal);
    }
}
