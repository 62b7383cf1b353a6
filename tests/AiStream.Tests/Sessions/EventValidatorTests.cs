using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;

namespace AiStream.Tests.Sessions;

public sealed class EventValidatorTests
{
    [Theory]
    [InlineData("""{"type":"RUN_STARTED","runId":"r"}""")]
    [InlineData("""{"type":"RUN_FINISHED","threadId":"s","runId":"r","result":{"x":1}}""")]
    [InlineData("""{"type":"RUN_ERROR","message":"boom","code":"x"}""")]
    [InlineData("""{"type":"TEXT_MESSAGE_START","messageId":"m","role":"assistant"}""")]
    [InlineData("""{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"hi"}""")]
    [InlineData("""{"type":"TEXT_MESSAGE_END","messageId":"m"}""")]
    [InlineData("""{"type":"TOOL_CALL_START","toolCallId":"t","toolCallName":"f","parentMessageId":"m"}""")]
    [InlineData("""{"type":"TOOL_CALL_ARGS","toolCallId":"t","delta":""}""")]
    [InlineData("""{"type":"TOOL_CALL_END","toolCallId":"t"}""")]
    [InlineData("""{"type":"TOOL_CALL_RESULT","messageId":"m2","toolCallId":"t","content":"42"}""")]
    [InlineData("""{"type":"STEP_STARTED","stepName":"plan"}""")]
    [InlineData("""{"type":"STEP_FINISHED","stepName":"plan"}""")]
    [InlineData("""{"type":"STATE_SNAPSHOT","snapshot":{"a":1}}""")]
    [InlineData("""{"type":"STATE_DELTA","delta":[{"op":"add","path":"/a","value":1}]}""")]
    [InlineData("""{"type":"MESSAGES_SNAPSHOT","messages":[]}""")]
    [InlineData("""{"type":"CUSTOM","name":"x","value":null,"timestamp":5}""")]
    public void Validate_WellFormedEvent_Passes(string json)
    {
        Assert.Null(EventValidator.Validate(JsonNode.Parse(json), "s1", out var body));
        Assert.NotNull(body);
    }

    [Theory]
    [InlineData("""[]""", "must be a JSON object")]
    [InlineData("""{"kind":"x"}""", "'type' must be a string")]
    [InlineData("""{"type":"THINKING"}""", "'type' 'THINKING' is not an AG-UI event type")]
    [InlineData("""{"type":"TEXT_MESSAGE_CONTENT","messageId":"m"}""", "'delta' must be a non-empty string")]
    [InlineData("""{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":""}""", "'delta' must be a non-empty string")]
    [InlineData("""{"type":"TEXT_MESSAGE_START","messageId":5}""", "'messageId' must be a non-empty string")]
    [InlineData("""{"type":"RUN_STARTED"}""", "'runId' must be a non-empty string")]
    [InlineData("""{"type":"STATE_DELTA","delta":{}}""", "'delta' must be a JSON Patch array")]
    [InlineData("""{"type":"STATE_SNAPSHOT"}""", "'snapshot' is required")]
    [InlineData("""{"type":"CUSTOM","name":"x","timestamp":"now"}""", "'timestamp' must be integer milliseconds")]
    [InlineData("""{"type":"CUSTOM","name":"presence.join","value":{"id":"mallory"}}""", "CUSTOM event names starting with 'presence.', 'stream.' or 'conversation.' are reserved")]
    [InlineData("""{"type":"CUSTOM","name":"stream.gap","value":{}}""", "CUSTOM event names starting with 'presence.', 'stream.' or 'conversation.' are reserved")]
    [InlineData("""{"type":"CUSTOM","name":"conversation.superseded","value":{"messageIds":["a1"]}}""", "CUSTOM event names starting with 'presence.', 'stream.' or 'conversation.' are reserved")]
    public void Validate_BadEvent_SaysWhy(string json, string expected)
    {
        Assert.StartsWith(expected, EventValidator.Validate(JsonNode.Parse(json), "s1", out _), StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NullsAndClientSeq_AreDroppedAndThreadDefaultsToTheSession()
    {
        Assert.Null(EventValidator.Validate(JsonNode.Parse("""{"type":"RUN_STARTED","runId":"r","seq":99,"rawEvent":null}"""), "s1", out var body));

        Assert.False(body!.ContainsKey("seq"));
        Assert.False(body.ContainsKey("rawEvent"));
        Assert.Equal("s1", body["threadId"]!.GetValue<string>());
    }
}
