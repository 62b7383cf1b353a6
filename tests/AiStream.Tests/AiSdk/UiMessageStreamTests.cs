using System.IO.Pipelines;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.Gateway.AiSdk;
using AiStream.Gateway.Sessions;

namespace AiStream.Tests.AiSdk;

/// <summary>Session events as the AI SDK's UI message stream: the chunks the SDK needs, in the order it accepts them.</summary>
public sealed class UiMessageStreamTests
{
    private long _seq;

    private SessionEvent E(string type, string? runId, params (string, JsonNode?)[] fields) =>
        SessionEvent.Create(AgUi.Event(type, fields), ++_seq, 1000, runId);

    /// <summary>Writes the events and returns every frame's payload (a JSON chunk, or "[DONE]").</summary>
    private static async Task<List<string>> Frames(UiMessageStream stream, params SessionEvent[] events)
    {
        var pipe = new Pipe();
        foreach (var e in events)
        {
            stream.Write(pipe.Writer, e);
        }

        await pipe.Writer.CompleteAsync();
        var text = Encoding.UTF8.GetString((await pipe.Reader.ReadAsync()).Buffer);
        Assert.EndsWith("\n\n", text, StringComparison.Ordinal);
        return [.. text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(f =>
        {
            Assert.StartsWith("data: ", f, StringComparison.Ordinal);
            Assert.DoesNotContain('\n', f);
            return f["data: ".Length..];
        })];
    }

    private static string Type(string frame) => frame == "[DONE]" ? frame : JsonNode.Parse(frame)!["type"]!.GetValue<string>();

    [Fact]
    public async Task AResumeStartingMidMessage_GetsTheStartsTheSdkRequiresBeforeTheDelta()
    {
        using var stream = new UiMessageStream();
        var frames = await Frames(stream,
            E(AgUi.TextMessageContent, "r1", ("messageId", "m1"), ("delta", "Hel")),
            E(AgUi.TextMessageContent, "r1", ("messageId", "m1"), ("delta", "lo")),
            E(AgUi.TextMessageEnd, "r1", ("messageId", "m1")),
            E(AgUi.RunFinished, "r1", ("threadId", "s"), ("runId", "r1"), ("outcome", new JsonObject { ["type"] = "success" })));

        Assert.Equal(["start", "start-step", "text-start", "text-delta", "text-delta", "text-end", "finish-step", "finish", "[DONE]"], frames.Select(Type));
        Assert.Equal("""{"type":"start","messageId":"r1"}""", frames[0]);
        Assert.Equal("""{"type":"finish","finishReason":"stop"}""", frames[^2]);
        Assert.True(stream.Ended);
    }

    [Fact]
    public async Task ARunError_IsAnErrorChunkThenDone_AndNothingAfterIt()
    {
        using var stream = new UiMessageStream();
        var frames = await Frames(stream,
            E(AgUi.RunStarted, "r1", ("threadId", "s"), ("runId", "r1")),
            E(AgUi.RunError, "r1", ("message", "The upstream failed <b>"), ("code", "upstream_error")),
            E(AgUi.TextMessageStart, "r1", ("messageId", "late"), ("role", "assistant")));

        Assert.Equal(["start", "error", "[DONE]"], frames.Select(Type));
        Assert.Equal("The upstream failed <b>", JsonNode.Parse(frames[1])!["errorText"]!.GetValue<string>());
    }

    [Fact]
    public async Task ACancelledRun_EndsWithAbortAndItsReason_NotFinish()
    {
        using var stream = new UiMessageStream();
        var frames = await Frames(stream,
            E(AgUi.RunStarted, "r1", ("threadId", "s"), ("runId", "r1")),
            E(AgUi.RunFinished, "r1", ("threadId", "s"), ("runId", "r1"), ("outcome", new JsonObject { ["type"] = "cancelled", ["reason"] = "requested" })));

        Assert.Equal(["""{"type":"start","messageId":"r1"}""", """{"type":"abort","reason":"requested"}""", "[DONE]"], frames);
    }

    [Fact]
    public async Task ARunCancelledByNobody_TheGatewayStopping_IsAnError_NotTheUsersAbort()
    {
        using var stream = new UiMessageStream();
        var frames = await Frames(stream,
            E(AgUi.RunStarted, "r1", ("threadId", "s"), ("runId", "r1")),
            E(AgUi.RunFinished, "r1", ("threadId", "s"), ("runId", "r1"), ("outcome", new JsonObject { ["type"] = "cancelled", ["reason"] = "shutdown" })));

        Assert.Equal(["""{"type":"start","messageId":"r1"}""", """{"type":"error","errorText":"The run was cancelled (shutdown)."}""", "[DONE]"], frames);
    }

    [Fact]
    public async Task ToolCalls_InputParsedOrKeptAsText_ErrorsAreToolOutputErrors_UnknownCallsAndEventsWriteNothing()
    {
        using var stream = new UiMessageStream("msg-continued");
        var frames = await Frames(stream,
            E(AgUi.RunStarted, "r1", ("threadId", "s"), ("runId", "r1")),
            E(AgUi.MessagesSnapshot, "r1", ("messages", new JsonArray())),
            E(AgUi.ToolCallStart, "r1", ("toolCallId", "c1"), ("toolCallName", "calculate")),
            E(AgUi.ToolCallArgs, "r1", ("toolCallId", "c1"), ("delta", "{\"expression\":")),
            E(AgUi.ToolCallArgs, "r1", ("toolCallId", "c1"), ("delta", "\"1/0\"}")),
            E(AgUi.ToolCallEnd, "r1", ("toolCallId", "c1")),
            E(AgUi.ToolCallStart, "r1", ("toolCallId", "c2"), ("toolCallName", "echo")),
            E(AgUi.ToolCallArgs, "r1", ("toolCallId", "c2"), ("delta", "not json")),
            E(AgUi.ToolCallEnd, "r1", ("toolCallId", "c2")),
            E(AgUi.ToolCallResult, "r1", ("messageId", "t1"), ("toolCallId", "c1"), ("content", "Error: divides by zero"), ("error", true)),
            E(AgUi.ToolCallResult, "r1", ("messageId", "t2"), ("toolCallId", "c2"), ("content", "not json")),
            E(AgUi.ToolCallResult, "r1", ("messageId", "t3"), ("toolCallId", "nobody"), ("content", "?")),
            E(AgUi.Custom, "r1", ("name", "")),
            E(AgUi.Custom, "r1", ("name", "progress"), ("value", null)),
            E(AgUi.RunFinished, "r1", ("threadId", "s"), ("runId", "r1")));

        Assert.Equal(
            ["start", "start-step", "tool-input-start", "tool-input-delta", "tool-input-delta", "tool-input-available", "tool-input-start", "tool-input-delta",
             "tool-input-available", "tool-output-error", "tool-output-available", "data-progress", "finish-step", "finish", "[DONE]"],
            frames.Select(Type));
        Assert.Equal("""{"type":"start","messageId":"msg-continued"}""", frames[0]);
        Assert.Equal("""{"type":"tool-input-available","toolCallId":"c1","toolName":"calculate","input":{"expression":"1/0"}}""", frames[5]);
        Assert.Equal("""{"type":"tool-input-available","toolCallId":"c2","toolName":"echo","input":"not json"}""", frames[8]);
        Assert.Equal("""{"type":"tool-output-error","toolCallId":"c1","errorText":"Error: divides by zero"}""", frames[9]);
        Assert.Equal("""{"type":"data-progress","data":null}""", frames[11]);
        Assert.Equal("""{"type":"finish","finishReason":"stop"}""", frames[^2]);
    }

    [Fact]
    public async Task ARunEndingOnUnansweredToolCalls_FinishesWithToolCalls_AndStateIsADataPart()
    {
        using var stream = new UiMessageStream();
        var frames = await Frames(stream,
            E(AgUi.RunStarted, "r1", ("threadId", "s"), ("runId", "r1")),
            E(AgUi.StateSnapshot, "r1", ("snapshot", new JsonObject { ["n"] = 1 })),
            E(AgUi.StateDelta, "r1", ("delta", new JsonArray(new JsonObject { ["op"] = "add", ["path"] = "/m", ["value"] = "<i>" }))),
            E(AgUi.ToolCallStart, "r1", ("toolCallId", "c1"), ("toolCallName", "get_weather")),
            E(AgUi.ToolCallEnd, "r1", ("toolCallId", "c1")),
            E(AgUi.RunFinished, "r1", ("threadId", "s"), ("runId", "r1")));

        Assert.Equal("""{"type":"data-state","id":"state","data":{"n":1}}""", frames[1]);
        Assert.Equal("""{"type":"data-state-delta","data":[{"op":"add","path":"/m","value":"<i>"}],"transient":true}""", frames[2]);
        Assert.Equal("""{"type":"tool-input-available","toolCallId":"c1","toolName":"get_weather","input":{}}""", frames[5]);
        Assert.Equal("""{"type":"finish","finishReason":"tool-calls"}""", frames[^2]);
    }

    [Fact]
    public async Task Fail_BeforeAnything_StartsThenErrs_AndUnicodeStaysReadable()
    {
        using var stream = new UiMessageStream();
        var pipe = new Pipe();
        stream.Fail(pipe.Writer, "fell behind — resume");
        stream.Fail(pipe.Writer, "twice");
        await pipe.Writer.CompleteAsync();
        var text = Encoding.UTF8.GetString((await pipe.Reader.ReadAsync()).Buffer);
        Assert.Equal("data: {\"type\":\"start\"}\n\ndata: {\"type\":\"error\",\"errorText\":\"fell behind — resume\"}\n\ndata: [DONE]\n\n", text);
    }
}
