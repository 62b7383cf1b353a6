using AiStream.Gateway.Agents;
using AiStream.Gateway.Agents.Tools;

namespace AiStream.Tests.Agents;

/// <summary>Reading definition files: valid ones parse into Semantic Kernel's config, every problem is one line naming file and key.</summary>
public sealed class PromptFilesTests
{
    private static readonly string[] Tools = ["calculate", "current_time", "read_state", "write_state"];

    [Fact]
    public void ReadPrompt_SemanticKernelKeys_TypedScalars()
    {
        var (prompt, error) = PromptFiles.ReadPrompt("prompts/p.yaml", """
            description: Does a thing.
            template: "Do {{$what}} {{$times}} times"
            input_variables:
              - name: what
                is_required: true
              - name: times
                default: "07"
            execution_settings:
              default:
                model_id: sim
                max_tokens: 40
                temperature: 0.3
            """);

        Assert.Null(error);
        Assert.Equal("p", prompt!.Name); // no name key: the file's name
        Assert.Equal("Does a thing.", prompt.Description);
        Assert.True(prompt.Config.InputVariables[0].IsRequired);
        Assert.Equal("07", prompt.Config.InputVariables[1].Default?.ToString()); // quoted stays text
        Assert.Equal("sim", prompt.Config.DefaultExecutionSettings!.ModelId);
    }

    [Theory]
    [InlineData("template: \"unclosed\n", "p.yaml: invalid YAML at line")]
    [InlineData("description: x\n", "p.yaml: 'template' is required")]
    [InlineData("name: \"bad name!\"\ntemplate: t\n", "p.yaml: 'name' must be 1 to 64 letters")]
    [InlineData("template: t\ninput_variables:\n  - name: a\n  - name: a\n", "p.yaml: input variable 'a' is declared twice")]
    [InlineData("template: t\ntemplate: u\n", "p.yaml: invalid YAML at line 2, column 1: Duplicate key")]
    [InlineData("- a\n- b\n", "p.yaml: must hold one YAML mapping")]
    [InlineData("template: t\ninput_variables:\n  - name: \"1x\"\n", "p.yaml: input variable name '1x' must be letters")]
    public void ReadPrompt_Problems_AreOneLineNamingFileAndKey(string text, string expected)
    {
        var (prompt, error) = PromptFiles.ReadPrompt("p.yaml", text);
        Assert.Null(prompt);
        Assert.StartsWith(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error!);
    }

    [Fact]
    public void ReadPrompt_DeepNestingAndHugeFiles_AreRefused()
    {
        var deep = "template: t\nx: " + string.Concat(Enumerable.Repeat("[", 40)) + string.Concat(Enumerable.Repeat("]", 40)) + "\n";
        Assert.Contains("nested deeper than 32", PromptFiles.ReadPrompt("p.yaml", deep).Error, StringComparison.Ordinal);
        Assert.Contains("larger than", PromptFiles.ReadPrompt("p.yaml", "template: " + new string('a', PromptFiles.MaxFileBytes)).Error, StringComparison.Ordinal);
    }

    [Fact]
    public void ReadAgent_Valid_AndEachProblem()
    {
        var (agent, error) = PromptFiles.ReadAgent("a/r.yaml", "name: r\ninstructions: Help.\nmodel: sim\ntools: [calculate, calculate, current_time]\nmax_steps: 3\n",
            Tools.Contains, Tools, 8);
        Assert.Null(error);
        Assert.Equal(["calculate", "current_time"], agent!.Tools);
        Assert.Equal(3, agent.MaxSteps);
        Assert.Equal("sim", agent.Model);
        Assert.Equal(8, PromptFiles.ReadAgent("a/d.yaml", "instructions: Help.\n", Tools.Contains, Tools, 8).Agent!.MaxSteps);

        foreach (var (text, expected) in new[]
        {
            ("instructions: Help.\ntools: [rockets]\n", "a/x.yaml: tool 'rockets' does not exist (tools: calculate, current_time, read_state, write_state)"),
            ("instructions: Help.\nmax_steps: 0\n", "a/x.yaml: 'max_steps' must be a whole number from 1 to 100"),
            ("instructions: Help.\nmax_steps: many\n", "a/x.yaml: 'max_steps' must be a whole number"),
            ("tools: []\n", "a/x.yaml: 'instructions' is required"),
            ("instructions: Help.\nsteps: 3\n", "a/x.yaml: unknown key 'steps'"),
            ("instructions: Help.\ntools: calculate\n", "a/x.yaml: 'tools' must be a list"),
        })
        {
            var (none, problem) = PromptFiles.ReadAgent("a/x.yaml", text, Tools.Contains, Tools, 8);
            Assert.Null(none);
            Assert.StartsWith(expected, problem, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("17 * 23", "391")]
    [InlineData("(12 + 30) * 2", "84")]
    [InlineData("7 / 2", "3.5")]
    [InlineData("10 % 4", "2")]
    public void Calculate_Arithmetic(string expression, string expected) => Assert.Equal(expected, CalculatorTools.Calculate(expression));

    [Theory]
    [InlineData("5 / 0", "divides by zero")]
    [InlineData("Convert('1', 'System.Int32')", "is not an arithmetic expression")]
    [InlineData("len('x')", "is not an arithmetic expression")]
    [InlineData("", "1 to 200 characters")]
    [InlineData("1 +", "could not be evaluated")]
    public void Calculate_AnythingElse_IsAnArgumentError(string expression, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => CalculatorTools.Calculate(expression));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Calculate_DeepOrLongExpressions_AreRefusedBeforeEvaluation()
    {
        Assert.Throws<ArgumentException>(() => CalculatorTools.Calculate(new string('(', 21) + "1" + new string(')', 21)));
        Assert.Throws<ArgumentException>(() => CalculatorTools.Calculate(string.Join("+", Enumerable.Repeat("1", 101))));
    }

    [Fact]
    public void CurrentTime_ComesFromTheTimeProvider()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 10, 30, 0, TimeSpan.Zero));
        Assert.Equal("2026-12-05T10:30:00Z (Saturday)", new TimeTools(time).CurrentTime());
    }
}
