using System.Text.Json.Nodes;
using AiStream.Gateway.AiSdk;

namespace AiStream.Tests.AiSdk;

/// <summary>useChat's request history against the session log: what is new goes in, what the log holds does not.</summary>
public sealed class UiMessagesTests
{
    private static JsonArray Parse(string json) => JsonNode.Parse(json)!.AsArray();

    private const string History = """
        [
          {"id":"u1","role":"user","parts":[{"type":"text","text":"Weather?"},{"type":"file","url":"data:,x","mediaType":"text/plain"},{"type":"text","text":"In Oslo."}]},
          {"id":"run_1","role":"assistant","parts":[{"type":"step-start"},{"type":"text","text":"Let me check."},
            {"type":"tool-get_weather","toolCallId":"c1","state":"output-available","input":{"city":"Oslo"},"output":{"sky":"clear"}},
            {"type":"tool-calculate","toolCallId":"c0","state":"output-available","input":{},"output":"4"},
            {"type":"dynamic-tool","toolName":"x","toolCallId":"c2","state":"output-error","errorText":"boom"},
            {"type":"tool-unknown","toolCallId":"c9","state":"output-available","output":"?"}]},
          {"id":"u2","role":"user","parts":[{"type":"text","text":"Thanks"}]}
        ]
        """;

    [Fact]
    public void ANewSession_IsSeededWithTheWholeHistory_TextOnly()
    {
        var (messages, error) = UiMessages.ToAgUi(Parse(History), []);

        Assert.Null(error);
        Assert.Equal(
            """[{"role":"user","content":"Weather?\nIn Oslo.","id":"u1"},{"role":"assistant","content":"Let me check.","id":"run_1"},{"role":"user","content":"Thanks","id":"u2"}]""",
            messages!.ToJsonString());
    }

    [Fact]
    public void ASessionWithAConversation_TakesUserMessagesAndOnlyTheToolResultsItWaitsFor()
    {
        // The log: the calls c0, c1 and c2 were made; c0 already has its result (an agent's own tool).
        JsonObject[] conversation =
        [
            JsonNode.Parse("""{"id":"u1","role":"user","content":"Weather? In Oslo."}""")!.AsObject(),
            JsonNode.Parse("""{"id":"a1","role":"assistant","content":"","toolCalls":[{"id":"c0"},{"id":"c1"},{"id":"c2"}]}""")!.AsObject(),
            JsonNode.Parse("""{"id":"t0","role":"tool","toolCallId":"c0","content":"4"}""")!.AsObject(),
        ];

        var (messages, error) = UiMessages.ToAgUi(Parse(History), conversation);

        Assert.Null(error);
        Assert.Equal(
            """[{"role":"user","content":"Weather?\nIn Oslo.","id":"u1"},""" +
            """{"id":"result_c1","role":"tool","toolCallId":"c1","content":"{\u0022sky\u0022:\u0022clear\u0022}"},""" +
            """{"id":"result_c2","role":"tool","toolCallId":"c2","content":"Error: boom"},""" +
            """{"role":"user","content":"Thanks","id":"u2"}]""",
            messages!.ToJsonString());
    }

    [Theory]
    [InlineData("""{"messages":1}""", "messages")]
    [InlineData("""[{"role":"robot","parts":[]}]""", "messages[0]")]
    [InlineData("""[{"role":"user"}]""", "messages[0]")]
    [InlineData("""[{"role":"user","parts":[]},{"role":"user","parts":[],"id":7}]""", "messages[1].id")]
    [InlineData("""[{"role":"user","parts":[],"id":""}]""", "messages[0].id")]
    [InlineData("""["text"]""", "messages[0]")]
    public void MalformedMessages_AreRefusedNamingTheField(string json, string param)
    {
        var node = JsonNode.Parse(json);
        var (messages, error) = UiMessages.ToAgUi(node is JsonObject o ? o["messages"] : node, []);

        Assert.Null(messages);
        Assert.Equal(400, error!.Status);
        Assert.Equal(param, error.Param);
    }
}
