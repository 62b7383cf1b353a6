using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Sessions;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Infrastructure.Tokens;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Security;

/// <summary>
/// Authentication on every transport: a missing, expired, wrongly signed, wrong-audience or unsigned token is a 401
/// problem with <c>WWW-Authenticate: Bearer</c> before any stream starts; a valid one passes.
/// </summary>
public sealed class AuthenticationTests
{
    private const string Audience = "aistream-tests";

    public static TheoryData<string, string> BadCredentials() => new()
    {
        { "missing", "missing_credentials" },
        { "expired", "token_expired" },
        { "wrong-key", "invalid_token" },
        { "wrong-audience", "invalid_audience" },
        { "alg-none", "invalid_token" },
        { "garbage", "invalid_token" },
        { "no-sub", "invalid_token" },
    };

    private static string? Credential(string kind) => kind switch
    {
        "missing" => null,
        "expired" => Mint("alice", Grants(("*", ["read", "write"])), "completions", lifetime: TimeSpan.FromMinutes(-5), audience: Audience),
        "wrong-key" => Mint("alice", Grants(("*", ["read", "write"])), "completions", key: "another-key-that-is-long-enough-for-hs256-0000", audience: Audience),
        "wrong-audience" => Mint("alice", Grants(("*", ["read", "write"])), "completions", audience: "someone-else"),
        "alg-none" => Mint("alice", Grants(("*", ["read", "write"])), "completions", audience: Audience, alg: "none"),
        "garbage" => "not.a.jwt",
        "no-sub" => Mint("", Grants(("*", ["read", "write"])), "completions", audience: Audience),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static string Valid(string sub = "alice") => Mint(sub, Grants(("*", ["read", "write"])), "completions", audience: Audience, name: "Alice");

    [Theory]
    [MemberData(nameof(BadCredentials))]
    public async Task BadCredential_IsRefusedWith401Problem_OnEveryTransport(string kind, string code)
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(), Audience));
        using var http = gateway.Client().WithBearer(Credential(kind));
        var session = NewSessionId();
        var requests = new List<HttpRequestMessage>
        {
            Get($"api/sessions/{session}/events", "text/event-stream"),
            Get($"api/sessions/{session}"),
            Get($"api/sessions/{session}/presence"),
            Post($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = "x", ["value"] = 1 }),
            Post($"api/sessions/{session}/runs", new JsonObject { ["messages"] = new JsonArray() }),
            Post($"api/sessions/{session}/runs/run_1/cancel", new JsonObject()),
            Post($"api/sessions/{session}/presence/state", new JsonObject()),
            Post("agui", new JsonObject { ["threadId"] = session }),
            Post("api/chat", new JsonObject { ["id"] = session, ["messages"] = new JsonArray() }),
            Get($"api/chat/{session}/stream", "text/event-stream"),
            Post($"api/chat/{session}/stop", new JsonObject()),
            Post("v1/chat/completions", new JsonObject { ["model"] = "sim", ["messages"] = new JsonArray() }),
            Get("v1/models"),
            Post("hubs/sessions/negotiate?negotiateVersion=1", null),
            WebSocketUpgrade("hubs/sessions"),
        };

        foreach (var request in requests)
        {
            var what = $"{request.Method} {request.RequestUri}";
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{what} answered {(int)response.StatusCode}");
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.First().Scheme);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var problem = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            Assert.Equal(401, problem["status"]!.GetValue<int>());
            Assert.Equal(code, problem["error"]!["code"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task HealthEndpoints_AnswerWithoutCredentials_AndReadyzSaysAuthenticationIsOn()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()));
        using var http = gateway.Client();
        using var live = await http.GetAsync("healthz");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        await WaitUntilAsync(async () => (await http.GetAsync("readyz")).StatusCode == HttpStatusCode.OK, "readyz");
        var ready = JsonNode.Parse(await http.GetStringAsync("readyz"))!;
        Assert.Equal("authentication on", ready["checks"]!["authentication"]!["description"]!.GetValue<string>());
    }

    [Fact]
    public async Task AuthenticationOff_ReadyzSaysSo()
    {
        await using var gateway = new GatewayFactory(Sim());
        using var http = gateway.Client();
        var ready = JsonNode.Parse(await http.GetStringAsync("readyz"))!;
        Assert.StartsWith("authentication OFF", ready["checks"]!["authentication"]!["description"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ValidToken_WatchesPublishesAndCompletes_AndTheMemberIsTheTokensSubject()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(), Audience));
        using var http = gateway.Client().WithBearer(Valid());
        var session = NewSessionId();

        // ?clientId= cannot make the caller appear as someone else.
        using var request = Get($"api/sessions/{session}/events?clientId=mallory", "text/event-stream");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("alice", response.Headers.GetValues("X-AiStream-Client-Id").Single());
        Assert.False(response.Headers.Contains("Set-Cookie"));

        await PublishAsync(http, session, Custom("hello", 1));
        var presence = JsonNode.Parse(await http.GetStringAsync($"api/sessions/{session}/presence"))!;
        var member = presence["members"]!.AsArray().Single()!;
        Assert.Equal("alice", member["id"]!.GetValue<string>());
        Assert.Equal("Alice", member["name"]!.GetValue<string>());

        using var completion = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "sim",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
    }

    [Fact]
    public async Task AccessTokenInTheQuery_IsAcceptedForWatchesAndTheHub_ButNotForOtherPosts()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(), Audience));
        using var http = gateway.Client();
        var session = NewSessionId();
        var token = Valid();

        using var watch = await http.SendAsync(Get($"api/sessions/{session}/events?access_token={token}", "text/event-stream"), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, watch.StatusCode);

        using var publish = await http.SendAsync(Post($"api/sessions/{session}/events?access_token={token}", new JsonObject { ["type"] = "CUSTOM", ["name"] = "x", ["value"] = 1 }));
        Assert.Equal(HttpStatusCode.Unauthorized, publish.StatusCode);

        foreach (var skipNegotiation in new[] { false, true })
        {
            await using var hub = new HubConnectionBuilder()
                .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o =>
                {
                    o.Transports = HttpTransportType.WebSockets;
                    o.SkipNegotiation = skipNegotiation;
                    o.AccessTokenProvider = () => Task.FromResult<string?>(token);
                })
                .Build();
            await hub.StartAsync();
            var joined = await hub.InvokeAsync<JsonObject>("Join", session, (long?)null);
            Assert.Equal(session, joined["sessionId"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task HubWithoutToken_NegotiateAndDirectWebSocketAreRefused()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(), Audience));
        using var http = gateway.Client();
        foreach (var skipNegotiation in new[] { false, true })
        {
            await using var hub = new HubConnectionBuilder()
                .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o =>
                {
                    o.Transports = HttpTransportType.WebSockets;
                    o.SkipNegotiation = skipNegotiation;
                })
                .Build();
            var failure = await Assert.ThrowsAnyAsync<Exception>(() => hub.StartAsync());
            Assert.Contains("401", failure.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task CompletionsNeedTheCompletionsScope()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim(), Audience));
        using var http = gateway.Client().WithBearer(Mint("bob", Grants(("*", ["admin"])), audience: Audience));
        using var models = await http.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.Forbidden, models.StatusCode);
        Assert.Equal("application/problem+json", models.Content.Headers.ContentType?.MediaType);
        using var completion = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject { ["model"] = "sim", ["messages"] = new JsonArray() });
        Assert.Equal(HttpStatusCode.Forbidden, completion.StatusCode);
    }

    [Fact]
    public async Task ApiKeys_InEitherHeader_WithTheirScopesAndSessionPatterns()
    {
        const string Publisher = "pub_0123456789abcdef0123456789abcdef";
        const string Reader = "read_0123456789abcdef0123456789abcdef";
        var settings = Sim();
        settings["AiStream:Auth:ApiKeys:jobs:Hash"] = Hash(Publisher);
        settings["AiStream:Auth:ApiKeys:jobs:Scopes:0"] = "write";
        settings["AiStream:Auth:ApiKeys:jobs:Sessions:0"] = "jobs-*";
        settings["AiStream:Auth:ApiKeys:dash:Hash"] = Hash(Reader);
        settings["AiStream:Auth:ApiKeys:dash:Scopes:0"] = "read";
        settings["AiStream:Auth:ApiKeys:dash:Scopes:1"] = "completions";
        await using var gateway = new GatewayFactory(settings);
        using var http = gateway.Client();

        var publish = new JsonObject { ["type"] = "CUSTOM", ["name"] = "job.done", ["value"] = 1 };
        using (var viaHeader = await Send(http, Post("api/sessions/jobs-1/events", publish), ("X-Api-Key", Publisher)))
        {
            Assert.Equal(HttpStatusCode.Created, viaHeader.StatusCode);
        }

        using (var viaBearer = await Send(http, Post("api/sessions/jobs-2/events", publish), ("Authorization", "Bearer " + Publisher)))
        {
            Assert.Equal(HttpStatusCode.Created, viaBearer.StatusCode);
        }

        using (var outside = await Send(http, Post("api/sessions/other/events", publish), ("X-Api-Key", Publisher)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, outside.StatusCode);
        }

        using (var noCompletions = await Send(http, Get("v1/models"), ("X-Api-Key", Publisher)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, noCompletions.StatusCode);
        }

        using (var readOnly = await Send(http, Post("api/sessions/jobs-1/events", publish), ("X-Api-Key", Reader)))
        {
            Assert.Equal(HttpStatusCode.Forbidden, readOnly.StatusCode);
        }

        using (var reads = await Send(http, Get("api/sessions/anything"), ("X-Api-Key", Reader)))
        {
            Assert.Equal(HttpStatusCode.OK, reads.StatusCode);
        }

        using (var models = await Send(http, Get("v1/models"), ("X-Api-Key", Reader)))
        {
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
        }

        using (var wrong = await Send(http, Get("api/sessions/jobs-1"), ("X-Api-Key", Publisher + "x")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
            Assert.Equal("invalid_api_key", JsonNode.Parse(await wrong.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
        }
    }

    private static async Task<HttpResponseMessage> Send(HttpClient http, HttpRequestMessage request, (string Name, string Value) header)
    {
        request.Headers.TryAddWithoutValidation(header.Name, header.Value);
        return await http.SendAsync(request);
    }

    internal static HttpRequestMessage Get(string uri, string? accept = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, uri);
        if (accept is not null)
        {
            request.Headers.Accept.ParseAdd(accept);
        }

        return request;
    }

    internal static HttpRequestMessage Post(string uri, JsonNode? body) =>
        new(HttpMethod.Post, uri) { Content = body is null ? new StringContent("") : JsonContent.Create(body) };

    /// <summary>A WebSocket upgrade request as a browser sends it without negotiation.</summary>
    internal static HttpRequestMessage WebSocketUpgrade(string uri)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.TryAddWithoutValidation("Connection", "Upgrade");
        request.Headers.TryAddWithoutValidation("Upgrade", "websocket");
        request.Headers.TryAddWithoutValidation("Sec-WebSocket-Version", "13");
        request.Headers.TryAddWithoutValidation("Sec-WebSocket-Key", Convert.ToBase64String(Guid.NewGuid().ToByteArray()));
        return request;
    }
}
