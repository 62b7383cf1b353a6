using System.Text.Json;
using AiStream.Gateway.Providers.Simulated;
using Microsoft.Extensions.AI;

namespace AiStream.Tests.Providers.Simulated;

/// <summary>
/// The simulated model as an agent's model: it works through the tools a question asks for, one per turn in the order
/// asked, with arguments read from the question, then answers with their results. The same conversation always
/// plans the same way.
/// </summary>
public sealed class SimulatedAgentScriptTests
{
    private static readonly AIFunctionDeclaration Calculate = Declare("calculate", """{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}""");
    private static readonly AIFunctionDeclaration Time = Declare("current_time", """{"type":"object","properties":{}}""");
    private static readonly AIFunctionDeclaration ReadState = Declare("read_state", """{"type":"object","properties":{"path":{"type":"string"}}}""");
    private static readonly AIFunctionDeclaration WriteState = Declare("write_state",
        """{"type":"object","properties":{"path":{"type":"string"},"value":{"type":"string"}},"required":["path","value"]}""");

    private static readonly ChatOptions Researcher = new() { Tools = [Time, Calculate, ReadState, WriteState] };

    [Fact]
    public void Plan_CallsTheAskedToolsOneByOne_InTheOrderAsked_ThenAnswersWithTheirResults()
    {
        List<ChatMessage> chat = [new(ChatRole.User, "What time is it, and what is (12 + 30) * 2?")];

        var first = SimulatedScript.Plan(chat, Researcher);
        Assert.Equal("current_time", first.ToolCall!.Name);
        Assert.Empty(first.ToolCall.Arguments!);
        Assert.Contains("current time", string.Concat(first.Thinking!), StringComparison.Ordinal);
        Respond(chat, first.ToolCall, "2026-12-05T10:00:00Z (Saturday)");

        var second = SimulatedScript.Plan(chat, Researcher);
        Assert.Equal("calculate", second.ToolCall!.Name);
        Assert.Equal("(12 + 30) * 2", second.ToolCall.Arguments!["expression"]);
        Respond(chat, second.ToolCall, "84");

        var answer = SimulatedScript.Plan(chat, Researcher);
        Assert.Null(answer.ToolCall);
        var text = string.Concat(answer.Words);
        Assert.StartsWith("The tools answered: current_time gave 2026-12-05T10:00:00Z (Saturday); calculate gave 84.", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Plan_WritesTheLastResultToTheStatePathTheQuestionNames_AndReadsThatPath()
    {
        List<ChatMessage> chat = [new(ChatRole.User, "What is 6 * 7? Write it to the notes, then read the state.")];
        var calls = new List<FunctionCallContent>();
        string[] results = ["42", "Set /notes to \"42\".", "{\"notes\":\"42\"}"];
        for (var i = 0; i < results.Length; i++)
        {
            var call = SimulatedScript.Plan(chat, Researcher).ToolCall!;
            calls.Add(call);
            Respond(chat, call, results[i]);
        }

        Assert.Equal(["calculate", "write_state", "read_state"], calls.Select(c => c.Name));
        Assert.Equal("/notes", calls[1].Arguments!["path"]);
        Assert.Equal("\"42\"", calls[1].Arguments!["value"]);
        Assert.Equal("/notes", calls[2].Arguments!["path"]);
        Assert.Null(SimulatedScript.Plan(chat, Researcher).ToolCall);
    }

    [Fact]
    public void Plan_SameConversation_SamePlanAndCallIds_ANewQuestionStartsOver()
    {
        List<ChatMessage> chat = [new(ChatRole.User, "What is 2 + 2?")];
        var once = SimulatedScript.Plan(chat, Researcher).ToolCall!;
        var again = SimulatedScript.Plan(chat, Researcher).ToolCall!;
        Assert.Equal(once.CallId, again.CallId);
        Respond(chat, once, "4");
        Assert.Null(SimulatedScript.Plan(chat, Researcher).ToolCall);

        // Asked again later, the same tool is called again for the new question.
        chat.Add(new ChatMessage(ChatRole.Assistant, "It is 4."));
        chat.Add(new ChatMessage(ChatRole.User, "And what is 3 + 3?"));
        Assert.Equal("3 + 3", SimulatedScript.Plan(chat, Researcher).ToolCall!.Arguments!["expression"]);
    }

    [Fact]
    public void Plan_AQuestionNoToolAnswers_IsProse()
    {
        var plan = SimulatedScript.Plan([new(ChatRole.User, "Tell me about gardens")], Researcher);
        Assert.Null(plan.ToolCall);
        Assert.NotEmpty(plan.Words);
    }

    private static void Respond(List<ChatMessage> chat, FunctionCallContent call, string result)
    {
        chat.Add(new ChatMessage(ChatRole.Assistant, [call]));
        chat.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(call.CallId, result)]));
    }

    private static AIFunctionDeclaration Declare(string name, string schema) =>
        AIFunctionFactory.CreateDeclaration(name, name.Replace('_', ' '), JsonDocument.Parse(schema).RootElement.Clone());
}
