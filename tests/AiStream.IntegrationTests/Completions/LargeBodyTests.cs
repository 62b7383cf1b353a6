using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Completions;

/// <summary>
/// Bodies past ClientJson.OffloadBytes are parsed off the socket thread; they must be judged exactly like small ones.
/// Sent chunked, so the gateway receives them in many pieces.
/// </summary>
public sealed class LargeBodyTests : IAsyncLifetime, IDisposable
{
    private readonly GatewayFactory _gateway = new(new Dictionary<string, string?>
    {
        ["AiStream:Providers:sim:TokensPerSecond"] = "0",
        ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
    });
    private HttpClient _http = null!;

    public Task InitializeAsync()
    {
        _http = _gateway.Http();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _gateway.DisposeAsync();
    }

    public void Dispose() => _gateway.Dispose();

    private static string Filler() => string.Concat(Enumerable.Repeat("lorem ipsum dolor ", 20_000)); // ~360 KB

    private Task<HttpResponseMessage> PostChunkedAsync(string body)
    {
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(body)), 8 * 1024);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        return _http.SendAsync(request);
    }

    [Fact]
    public async Task Post_LargeValidBody_IsAnswered()
    {
        var body = new JsonObject
        {
            ["model"] = "sim",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = Filler() }),
        }.ToJsonString();
        Assert.True(body.Length > 256 * 1024);

        using var response = await PostChunkedAsync(body);
        var answer = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("chat.completion", answer!["object"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(answer["choices"]![0]!["message"]!["content"]!.GetValue<string>()));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Post_LargeBadJson_Returns400InvalidJson(bool duplicateProperty)
    {
        var body = duplicateProperty
            ? $$"""{"model":"sim","messages":[{"role":"user","content":"{{Filler()}}"}],"model":"other"}"""
            : $$"""{"model":"sim","messages":[{"role":"user","content":"{{Filler()}}"}]""";

        using var response = await PostChunkedAsync(body);
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("invalid_json", problem!["error"]!["code"]!.GetValue<string>());
    }
}
