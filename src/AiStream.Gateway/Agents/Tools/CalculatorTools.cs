using System.ComponentModel;
using System.Data;
using System.Globalization;
using Microsoft.SemanticKernel;

namespace AiStream.Gateway.Agents.Tools;

/// <summary>
/// Built-in tool: arithmetic. The expression is evaluated by <see cref="DataTable.Compute"/> (the framework's own
/// expression evaluator) after a check that it holds only numbers, operators and parentheses, and is short: a model's
/// argument is input from outside, and nothing but arithmetic may reach the evaluator.
/// </summary>
internal sealed class CalculatorTools
{
    /// <summary>Longest expression evaluated.</summary>
    public const int MaxLength = 200;

    [KernelFunction("calculate")]
    [Description("Evaluates an arithmetic expression with + - * / %, parentheses and decimal numbers, e.g. \"(17 * 23) / 4\".")]
    public static string Calculate([Description("The arithmetic expression to evaluate.")] string expression)
    {
        if (string.IsNullOrWhiteSpace(expression) || expression.Length > MaxLength)
        {
            throw new ArgumentException($"The expression must be 1 to {MaxLength} characters.", nameof(expression));
        }

        var depth = 0;
        foreach (var c in expression)
        {
            depth += c == '(' ? 1 : c == ')' ? -1 : 0;
            if (depth is < 0 or > 20 || !(char.IsAsciiDigit(c) || c is '.' or ' ' or '+' or '-' or '*' or '/' or '%' or '(' or ')'))
            {
                throw new ArgumentException($"'{expression}' is not an arithmetic expression: use numbers, + - * / % and parentheses.", nameof(expression));
            }
        }

        object result;
        try
        {
            using var table = new DataTable { Locale = CultureInfo.InvariantCulture };
            result = table.Compute(expression, null);
        }
        catch (Exception ex) when (ex is EvaluateException or SyntaxErrorException or OverflowException or DivideByZeroException or InvalidCastException)
        {
            throw new ArgumentException($"'{expression}' could not be evaluated: {ex.Message}", nameof(expression), ex);
        }

        return result switch
        {
            DBNull => throw new ArgumentException($"'{expression}' has no value.", nameof(expression)),
            double d when double.IsInfinity(d) || double.IsNaN(d) => throw new ArgumentException($"'{expression}' divides by zero.", nameof(expression)),
            IFormattable number => number.ToString(null, CultureInfo.InvariantCulture),
            _ => result.ToString() ?? string.Empty,
        };
    }
}
