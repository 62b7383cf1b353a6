using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Security.AuthenticationTests;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Security;

/// <summary>
/// <c>AiStream:Security:AllowedOrigins</c>: a browser origin not listed is refused before any data flows (cross-site
/// WebSocket hijacking, cross-site text/plain POSTs); listed origins get CORS; requests without Origin are unaffected.
/// </summary>
public sealed class OriginTests
{
    private const string Allowed = "https://app.example.com";

    private static GatewayFactory Gateway() => new(Sim().With("AiStream:Security:AllowedOrigins:0", Allowed));

    [Fact]
    public async Task ForeignOrigin_IsRefusedWith403_OnEveryTransport()
    {
        await using var gateway = Gateway();
        using var http = gateway.Client();
        var session = NewSessionId();
        var requests = new[]
        {
            Get($"api/sessions/{session}/events", "text/event-stream"),
            Post("hubs/sessions/negotiate?negotiateVersion=1", null),
            WebSocketUpgrade("hubs/sessions"),
            Post("agui", new JsonObject { ["threadId"] = session }),
            Post("api/chat", new JsonObject { ["id"] = session, ["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["parts"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "hi" }) }) }),
            Get($"api/chat/{session}/stream", "text/event-stream"),
            Post($"api/chat/{session}/stop", new JsonObject()),
            Post($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = "x", ["value"] = 1 }),
            new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent("{\"model\":\"sim\",\"messages\":[]}", System.Text.Encoding.UTF8, "text/plain") },
        };
        foreach (var request in requests)
        {
            request.Headers.TryAddWithoutValidation("Origin", "https://evil.example.net");
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.True(response.StatusCode == HttpStatusCode.Forbidden, $"{request.Method} {request.RequestUri} answered {(int)response.StatusCode}");
            Assert.Equal("origin_not_allowed", JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]!.GetValue<string>());
            Assert.False(response.Headers.Contains("Access-Control-Allow-Origin"));
        }

        // Nothing was published by the refused POST.
        var info = await InfoAsync(http, session);
        Assert.Equal(0, info["headSeq"]?.GetValue<long>() ?? 0);
    }

    [Fact]
    public async Task ListedOrigin_GetsCorsAndItsPreflightAnswered_AndRequestsWithoutOriginPass()
    {
        await using var gateway = Gateway();
        using var http = gateway.Client();
        var session = NewSessionId();

        using var preflight = new HttpRequestMessage(HttpMethod.Options, $"api/sessions/{session}/events");
        preflight.Headers.TryAddWithoutValidation("Origin", Allowed);
        preflight.Headers.TryAddWithoutValidation("Access-Control-Request-Method", "POST");
        preflight.Headers.TryAddWithoutValidation("Access-Control-Request-Headers", "content-type,authorization");
        using (var answer = await http.SendAsync(preflight))
        {
            Assert.Equal(HttpStatusCode.NoContent, answer.StatusCode);
            Assert.Equal(Allowed, answer.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }

        using var publish = Post($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = "x", ["value"] = 1 });
        publish.Headers.TryAddWithoutValidation("Origin", Allowed);
        using (var answer = await http.SendAsync(publish))
        {
            Assert.Equal(HttpStatusCode.Created, answer.StatusCode);
            Assert.Equal(Allowed, answer.Headers.GetValues("Access-Control-Allow-Origin").Single());
        }

        using (var noOrigin = await http.PostAsJsonAsync($"api/sessions/{session}/events", new JsonObject { ["type"] = "CUSTOM", ["name"] = "y", ["value"] = 2 }))
        {
            Assert.Equal(HttpStatusCode.Created, noOrigin.StatusCode);
        }
    }

    [Fact]
    public void AnOriginWithAPath_FailsAtStart()
    {
        using var gateway = new GatewayFactory(Sim().With("AiStream:Security:AllowedOrigins:0", "https://app.example.com/path"));
        var failure = Assert.ThrowsAny<Exception>(() => gateway.Start());
        Assert.Contains("is not an origin", failure.ToString(), StringComparison.Ordinal);
    }
}
