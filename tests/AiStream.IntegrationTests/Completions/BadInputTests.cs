using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Completions;

/// <summary>Whatever a client sends, it gets a clear 4xx problem, never a 500.</summary>
public sealed class BadInputTests : IAsyncLifetime, IDisposable
{
    private readonly GatewayFactory _gateway = new(new Dictionary<string, string?>
    {
        ["AiStream:Completions:MaxRequestBodyBytes"] = "4096",
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

    [Theory]
    [InlineData("", null, "invalid_json")]
    [InlineData("{", null, "invalid_json")]
    [InlineData("[1,2]", null, "invalid_request")]
    [InlineData("\"text\"", null, "invalid_request")]
    [InlineData("{}", "messages", "invalid_request")]
    [InlineData("""{"messages":[]}""", "messages", "invalid_request")]
    [InlineData("""{"messages":"hi"}""", "messages", "invalid_request")]
    [InlineData("""{"messages":[1]}""", "messages[0]", "invalid_request")]
    [InlineData("""{"messages":[{"role":"wizard","content":"x"}]}""", "messages[0].role", "invalid_request")]
    [InlineData("""{"messages":[{"content":"x"}]}""", "messages[0].role", "invalid_request")]
    [InlineData("""{"messages":[{"role":"user","content":42}]}""", "messages[0].content", "invalid_request")]
    [InlineData("""{"model":7,"messages":[{"role":"user","content":"x"}]}""", "model", "invalid_request")]
    [InlineData("""{"model":"","messages":[{"role":"user","content":"x"}]}""", "model", "invalid_request")]
    [InlineData("""{"stream":"yes","messages":[{"role":"user","content":"x"}]}""", "stream", "invalid_request")]
    [InlineData("""{"stream":true,"stream_options":[],"messages":[{"role":"user","content":"x"}]}""", "stream_options", "invalid_request")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":"y"},"messages":[{"role":"user","content":"x"}]}""", "stream_options.include_usage", "invalid_request")]
    [InlineData("""{"max_tokens":0,"messages":[{"role":"user","content":"x"}]}""", "max_tokens", "invalid_request")]
    [InlineData("""{"max_completion_tokens":1.5,"messages":[{"role":"user","content":"x"}]}""", "max_completion_tokens", "invalid_request")]
    [InlineData("""{"tools":{},"messages":[{"role":"user","content":"x"}]}""", "tools", "invalid_request")]
    [InlineData("""{"model":"sim","model":"other","messages":[{"role":"user","content":"x"}]}""", null, "invalid_json")]
    public async Task Post_BadBody_Returns400ProblemNamingTheField(string body, string? param, string code)
    {
        using var response = await _http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal(400, problem!["status"]!.GetValue<int>());
        Assert.Equal("invalid_request_error", problem["error"]!["type"]!.GetValue<string>());
        Assert.Equal(code, problem["error"]!["code"]!.GetValue<string>());
        Assert.Equal(param, problem["error"]!["param"]?.GetValue<string>());
        Assert.False(string.IsNullOrWhiteSpace(problem["error"]!["message"]!.GetValue<string>()));
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"assistant","tool_calls":[{"function":[1]},7]},{"role":"user","content":"x"}]}""")]
    [InlineData("""{"tool_choice":{"function":[]},"tools":[{"function":[]},5,{"function":{"name":3}}],"messages":[{"role":"user","content":"x"}]}""")]
    [InlineData("""{"messages":[{"role":"user","content":[1,{"text":5},{"type":"text","text":"hi"}],"name":[]}]}""")]
    [InlineData("""{"messages":[{"role":"tool","content":null,"tool_call_id":{}}],"stream":true}""")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"stream_options":null,"tools":null,"max_tokens":2}""")]
    public async Task Post_OddButWellFormedShapes_AreAnsweredWithoutServerError(string body)
    {
        using var response = await _http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Post_BodyOverTheLimit_Returns413()
    {
        var big = new string('x', 8000);
        using var response = await _http.PostAsync("v1/chat/completions",
            new StringContent($$"""{"messages":[{"role":"user","content":"{{big}}"}]}""", Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task Post_ChunkedBodyOverTheLimit_Returns413()
    {
        var big = Encoding.UTF8.GetBytes($$"""{"messages":[{"role":"user","content":"{{new string('x', 8000)}}"}]}""");
        using var content = new StreamContent(new MemoryStream(big));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;

        using var response = await _http.SendAsync(request);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task Post_WithoutContentType_IsStillAccepted()
    {
        // curl -d sends form encoding by default; the body is JSON all the same.
        using var response = await _http.PostAsync("v1/chat/completions",
            new StringContent("""{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}""", Encoding.UTF8, "application/x-www-form-urlencoded"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Get_OnCompletions_Returns405Problem()
    {
        using var response = await _http.GetAsync("v1/chat/completions");

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task Get_UnknownPath_Returns404Problem()
    {
        using var response = await _http.GetAsync("v1/nothing-here");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
    }

    [Fact]
    public async Task Post_DeeplyNestedJson_Returns400()
    {
        var deep = string.Concat(Enumerable.Repeat("[", 200)) + string.Concat(Enumerable.Repeat("]", 200));
        using var response = await _http.PostAsync("v1/chat/completions", new StringContent($$"""{"messages":{{deep}}}""", Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Theory]
    [InlineData("GET", "nope", 404, "not_found")]
    [InlineData("GET", "v1/nope", 404, "not_found")]
    [InlineData("DELETE", "v1/models", 405, "method_not_allowed")]
    [InlineData("GET", "v1/chat/completions", 405, "method_not_allowed")]
    public async Task RoutingErrors_AreProblemsWithOpenAIsErrorObject(string method, string path, int status, string code)
    {
        using var response = await _http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal(status, body["status"]!.GetValue<int>());
        Assert.Equal(code, body["error"]!["code"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(body["error"]!["message"]!.GetValue<string>()));
    }
}
