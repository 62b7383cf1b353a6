using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Completions;
using AiStream.Gateway.Providers;
using Microsoft.Extensions.AI;

namespace AiStream.Tests.Completions;

public sealed class CompletionRequestTests
{
    private const string DefaultModel = "sim";

    [Theory]
    [InlineData("[]")]
    [InlineData("\"hello\"")]
    [InlineData("42")]
    [InlineData("null")]
    public void Parse_NotAnObject_Rejects(string json)
    {
        var error = Reject(json);

        Assert.Null(error.Param);
        Assert.Contains("JSON object", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"model":"gpt"}""")]
    [InlineData("""{"model":"gpt","messages":[]}""")]
    [InlineData("""{"model":"gpt","messages":null}""")]
    [InlineData("""{"model":"gpt","messages":"hi"}""")]
    [InlineData("""{"model":"gpt","messages":{"role":"user","content":"hi"}}""")]
    public void Parse_MissingOrEmptyMessages_RejectsNamingMessages(string json)
    {
        var error = Reject(json);

        Assert.Equal("messages", error.Param);
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"robot","content":"hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages":[{"content":"hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"},{"role":"USER","content":"hi"}]}""", "messages[1].role")]
    [InlineData("""{"messages":[{"role":1,"content":"hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages":["hi"]}""", "messages[0]")]
    [InlineData("""{"messages":[{"role":"user","content":5}]}""", "messages[0].content")]
    public void Parse_BadMessage_RejectsNamingTheField(string json, string param)
    {
        var error = Reject(json);

        Assert.Equal(param, error.Param);
    }

    [Theory]
    [InlineData("5")]
    [InlineData("\"\"")]
    [InlineData("\"  \"")]
    [InlineData("[\"gpt\"]")]
    [InlineData("true")]
    public void Parse_ModelNotANonEmptyString_RejectsNamingModel(string model)
    {
        var error = Reject($$"""{"model":{{model}},"messages":[{"role":"user","content":"hi"}]}""");

        Assert.Equal("model", error.Param);
    }

    [Theory]
    [InlineData("\"true\"")]
    [InlineData("1")]
    [InlineData("{}")]
    public void Parse_StreamNotABoolean_RejectsNamingStream(string stream)
    {
        var error = Reject($$"""{"stream":{{stream}},"messages":[{"role":"user","content":"hi"}]}""");

        Assert.Equal("stream", error.Param);
    }

    [Theory]
    [InlineData("true", "stream_options")]
    [InlineData("\"yes\"", "stream_options")]
    [InlineData("[]", "stream_options")]
    [InlineData("""{"include_usage":"true"}""", "stream_options.include_usage")]
    [InlineData("""{"include_usage":1}""", "stream_options.include_usage")]
    public void Parse_BadStreamOptions_RejectsNamingTheField(string options, string param)
    {
        var error = Reject($$"""{"stream":true,"stream_options":{{options}},"messages":[{"role":"user","content":"hi"}]}""");

        Assert.Equal(param, error.Param);
    }

    [Theory]
    [InlineData("max_tokens", "0")]
    [InlineData("max_tokens", "-5")]
    [InlineData("max_tokens", "1.5")]
    [InlineData("max_tokens", "\"10\"")]
    [InlineData("max_tokens", "99999999999")]
    [InlineData("max_completion_tokens", "0")]
    [InlineData("max_completion_tokens", "-1")]
    [InlineData("max_completion_tokens", "true")]
    public void Parse_NonPositiveMaxTokens_RejectsNamingTheField(string name, string value)
    {
        var error = Reject($$"""{"{{name}}":{{value}},"messages":[{"role":"user","content":"hi"}]}""");

        Assert.Equal(name, error.Param);
    }

    [Fact]
    public void Parse_ToolsNotAnArray_RejectsNamingTools()
    {
        var error = Reject("""{"tools":{"type":"function"},"messages":[{"role":"user","content":"hi"}]}""");

        Assert.Equal("tools", error.Param);
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}]}""")]
    [InlineData("""{"model":null,"messages":[{"role":"user","content":"hi"}]}""")]
    public void Parse_NoModel_UsesDefaultModel(string json)
    {
        var request = Accept(json);

        Assert.Equal(DefaultModel, request.Model);
        Assert.False(request.Stream);
        Assert.False(request.ClientWantsUsage);
    }

    [Fact]
    public void Parse_ValidRequest_KeepsModelAndStream()
    {
        var request = Accept("""
            {"model":"gpt-4o","stream":true,"max_tokens":1,"max_completion_tokens":2048,
             "messages":[{"role":"system","content":"be brief"},{"role":"developer","content":null},
                         {"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":"hello"},
                         {"role":"tool","tool_call_id":"c1","content":"42"},{"role":"function","name":"f","content":"1"}]}
            """);

        Assert.Equal("gpt-4o", request.Model);
        Assert.True(request.Stream);
    }

    [Theory]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":true}}""", true)]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false}}""", false)]
    [InlineData("""{"stream":true,"stream_options":{}}""", false)]
    [InlineData("""{"stream":true,"stream_options":null}""", false)]
    [InlineData("""{"stream":true}""", false)]
    public void Parse_IncludeUsage_SetsClientWantsUsageOnlyWhenTrue(string head, bool expected)
    {
        var json = head[..^1] + ""","messages":[{"role":"user","content":"hi"}]}""";

        var request = Accept(json);

        Assert.Equal(expected, request.ClientWantsUsage);
    }

    [Fact]
    public void UpstreamBody_Streaming_RewritesModelAndRequestsUsageKeepingEverythingElse()
    {
        var request = Accept("""
            {"model":"public","stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},
             "reasoning_effort":"low","metadata":{"team":"a","n":[1,2]},"temperature":0.2,
             "messages":[{"role":"user","content":"hi","x_extra":true}]}
            """);

        var body = JsonNode.Parse(request.UpstreamBody(Route()))!.AsObject();

        Assert.Equal("gpt-4o-2024-08-06", body["model"]!.GetValue<string>());
        Assert.True(body["stream"]!.GetValue<bool>());
        var options = body["stream_options"]!.AsObject();
        Assert.True(options["include_usage"]!.GetValue<bool>());
        Assert.False(options["include_obfuscation"]!.GetValue<bool>());
        Assert.Equal(2, options.Count);
        Assert.Equal("low", body["reasoning_effort"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"team":"a","n":[1,2]}"""), body["metadata"]));
        Assert.Equal(0.2, body["temperature"]!.GetValue<double>());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""[{"role":"user","content":"hi","x_extra":true}]"""), body["messages"]));
        Assert.Equal(["model", "stream", "stream_options", "reasoning_effort", "metadata", "temperature", "messages"], body.Select(p => p.Key));
        // The client did not ask for usage: the gateway asked on its own behalf and must not pass usage chunks on.
        Assert.False(request.ClientWantsUsage);
    }

    [Theory]
    [InlineData("""{"stream":true,"messages":[{"role":"user","content":"hi"}]}""")]
    [InlineData("""{"stream":true,"stream_options":null,"messages":[{"role":"user","content":"hi"}]}""")]
    public void UpstreamBody_StreamingWithoutStreamOptions_AddsIncludeUsage(string json)
    {
        var request = Accept(json);

        var body = JsonNode.Parse(request.UpstreamBody(Route()))!.AsObject();

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"include_usage":true}"""), body["stream_options"]));
        Assert.Equal("gpt-4o-2024-08-06", body["model"]!.GetValue<string>());
    }

    [Fact]
    public void UpstreamBody_CalledForEachFallback_RenamesModelEachTime()
    {
        var request = Accept("""{"model":"public","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}""");

        var first = JsonNode.Parse(request.UpstreamBody(Route("first-upstream")))!;
        var second = JsonNode.Parse(request.UpstreamBody(Route("second-upstream")))!;

        Assert.Equal("first-upstream", first["model"]!.GetValue<string>());
        Assert.Equal("second-upstream", second["model"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"include_usage":true}"""), second["stream_options"]));
    }

    [Fact]
    public void UpstreamBody_NotStreaming_RemovesStreamOptions()
    {
        var request = Accept("""{"model":"public","stream":false,"stream_options":{"include_usage":true},"reasoning_effort":"high","messages":[{"role":"user","content":"hi"}]}""");

        var body = JsonNode.Parse(request.UpstreamBody(Route()))!.AsObject();

        Assert.False(body.ContainsKey("stream_options"));
        Assert.Equal("gpt-4o-2024-08-06", body["model"]!.GetValue<string>());
        Assert.Equal("high", body["reasoning_effort"]!.GetValue<string>());
        Assert.False(body["stream"]!.GetValue<bool>());
    }

    [Fact]
    public void UpstreamBody_NoModelInRequest_AddsUpstreamModel()
    {
        var request = Accept("""{"messages":[{"role":"user","content":"hi"}]}""");

        var body = JsonNode.Parse(request.UpstreamBody(Route()))!.AsObject();

        Assert.Equal("gpt-4o-2024-08-06", body["model"]!.GetValue<string>());
        Assert.False(body.ContainsKey("stream_options"));
    }

    [Fact]
    public void ToChat_Tools_MapsToDeclarationsWithSchema()
    {
        const string schema = """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}""";
        var request = Accept("""
            {"messages":[{"role":"user","content":"hi"}],
             "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":SCHEMA}},
                      {"type":"function","function":{"name":"ping"}},
                      {"type":"function","function":{"description":"no name"}}]}
            """.Replace("SCHEMA", schema, StringComparison.Ordinal));

        var (_, options) = request.ToChat();

        Assert.NotNull(options.Tools);
        Assert.Collection(
            options.Tools,
            tool =>
            {
                var declaration = Assert.IsAssignableFrom<AIFunctionDeclaration>(tool);
                Assert.Equal("get_weather", declaration.Name);
                Assert.Equal("Weather now", declaration.Description);
                Assert.True(JsonElement.DeepEquals(JsonDocument.Parse(schema).RootElement, declaration.JsonSchema), declaration.JsonSchema.GetRawText());
            },
            tool =>
            {
                var declaration = Assert.IsAssignableFrom<AIFunctionDeclaration>(tool);
                Assert.Equal("ping", declaration.Name);
                Assert.True(JsonElement.DeepEquals(JsonDocument.Parse("""{"type":"object"}""").RootElement, declaration.JsonSchema), declaration.JsonSchema.GetRawText());
            });
        Assert.IsType<AutoChatToolMode>(options.ToolMode);
    }

    [Theory]
    [InlineData("\"required\"", typeof(RequiredChatToolMode), null)]
    [InlineData("\"none\"", typeof(NoneChatToolMode), null)]
    [InlineData("\"auto\"", typeof(AutoChatToolMode), null)]
    [InlineData("""{"type":"function","function":{"name":"get_weather"}}""", typeof(RequiredChatToolMode), "get_weather")]
    public void ToChat_ToolChoice_MapsToToolMode(string choice, Type mode, string? requiredName)
    {
        var request = Accept("""
            {"messages":[{"role":"user","content":"hi"}],"tool_choice":CHOICE,
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}
            """.Replace("CHOICE", choice, StringComparison.Ordinal));

        var (_, options) = request.ToChat();

        Assert.IsType(mode, options.ToolMode);
        if (options.ToolMode is RequiredChatToolMode required)
        {
            Assert.Equal(requiredName, required.RequiredFunctionName);
        }
    }

    [Theory]
    [InlineData("""{"max_completion_tokens":300,"max_tokens":100}""", 300)]
    [InlineData("""{"max_tokens":100}""", 100)]
    [InlineData("""{"max_completion_tokens":7}""", 7)]
    [InlineData("{}", null)]
    public void ToChat_MaxTokens_PrefersMaxCompletionTokens(string head, int? expected)
    {
        var json = head == "{}"
            ? """{"messages":[{"role":"user","content":"hi"}]}"""
            : head[..^1] + ""","messages":[{"role":"user","content":"hi"}]}""";
        var request = Accept(json);

        var (_, options) = request.ToChat();

        Assert.Equal(expected, options.MaxOutputTokens);
    }

    [Fact]
    public void ToChat_Conversation_MapsRolesTextAndToolMessages()
    {
        var request = Accept("""
            {"messages":[
              {"role":"system","content":"be brief"},
              {"role":"developer","content":"no emoji"},
              {"role":"user","name":"ann","content":[{"type":"text","text":"line one"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"line two"}]},
              {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"Sunny, 21 C"},
              {"role":"assistant","content":"It is sunny."}]}
            """);

        var (messages, _) = request.ToChat();

        Assert.Equal(6, messages.Count);
        Assert.Equal([ChatRole.System, ChatRole.System, ChatRole.User, ChatRole.Assistant, ChatRole.Tool, ChatRole.Assistant], messages.Select(m => m.Role));
        Assert.Equal("be brief", messages[0].Text);
        Assert.Equal("no emoji", messages[1].Text);
        Assert.Equal("line one\nline two", messages[2].Text);
        Assert.Equal("ann", messages[2].AuthorName);
        var call = Assert.Single(messages[3].Contents.OfType<FunctionCallContent>());
        Assert.Equal("call_1", call.CallId);
        Assert.Equal("get_weather", call.Name);
        var result = Assert.IsType<FunctionResultContent>(Assert.Single(messages[4].Contents));
        Assert.Equal("call_1", result.CallId);
        Assert.Equal("Sunny, 21 C", result.Result);
        Assert.Equal("It is sunny.", messages[5].Text);
    }

    [Fact]
    public void MessagesForCounting_Conversation_YieldsRoleNameAndText()
    {
        var request = Accept("""{"messages":[{"role":"system","content":"be brief"},{"role":"user","name":"ann","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]}""");

        var counted = request.MessagesForCounting().ToList();

        Assert.Equal([("system", null, "be brief"), ("user", "ann", "a\nb"), ("assistant", null, "")], counted);
    }

    private static ModelRoute Route(string upstream = "gpt-4o-2024-08-06") => new(
        "public",
        "openai",
        new ProviderOptions { Type = ProviderTypes.OpenAI, ApiKey = "sk-test" },
        upstream,
        [],
        TimeSpan.FromSeconds(30),
        TimeSpan.FromSeconds(30),
        TimeSpan.FromSeconds(300));

    private static CompletionRequest Accept(string json)
    {
        var request = CompletionRequest.Parse(JsonNode.Parse(json), DefaultModel, out var error);

        Assert.Null(error);
        return Assert.IsType<CompletionRequest>(request);
    }

    private static ApiError Reject(string json)
    {
        var request = CompletionRequest.Parse(JsonNode.Parse(json), DefaultModel, out var error);

        Assert.Null(request);
        Assert.NotNull(error);
        Assert.Equal(400, error.Status);
        Assert.Equal("invalid_request_error", error.Type);
        Assert.False(string.IsNullOrWhiteSpace(error.Message));
        return error;
    }
}
