using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Providers.Simulated;

/// <summary>What the simulated model will say: prose words, or one tool call (with its reasoning before it).</summary>
internal sealed record SimulatedPlan(IReadOnlyList<string> Words, FunctionCallContent? ToolCall, IReadOnlyList<string>? Thinking = null);

/// <summary>
/// Writes the simulated model's answer. The text is deterministic: the same conversation always gives the same
/// answer, because the random source is seeded from a SHA-256 of the last user message.
/// </summary>
internal static partial class SimulatedScript
{
    private static readonly string[] Openers =
    [
        "Good question about {0}.",
        "Here is how I would think about {0}.",
        "Let me walk through {0} step by step.",
        "There are a few things worth saying about {0}.",
        "{0} is a good place to start.",
    ];

    private static readonly string[] Body =
    [
        "The first thing to notice is that small choices early on shape everything that follows.",
        "Most of the difficulty comes from the edges, not from the middle of the problem.",
        "It helps to write the goal down in one sentence before choosing any tools.",
        "A short experiment usually tells you more than a long debate.",
        "Measure before you change anything, then measure again afterwards.",
        "People tend to underestimate how much time the last ten percent takes.",
        "Keep the simple path simple and make the unusual path explicit.",
        "When two options look equal, pick the one that is easier to undo.",
        "Clear names and honest error messages save more time than clever code.",
        "The answer depends on scale: what works for ten users may not work for ten thousand.",
        "Feedback arrives faster when the work is split into small, finished pieces.",
        "It is worth asking who will maintain this a year from now.",
        "A good default does most of the work, and configuration covers the rest.",
        "Streaming the answer word by word makes even a slow reply feel responsive.",
        "Failures are normal, so plan for them instead of hoping they stay away.",
        "Latency matters most at the start, when someone is waiting for the first word.",
        "Write down what you decided and why, so nobody has to guess later.",
        "The cheapest request is the one you never have to send twice.",
        "Trust grows when a system says clearly what it did and what it could not do.",
        "Simplicity is not the absence of features but the absence of surprises.",
    ];

    private static readonly string[] Closers =
    [
        "I hope that gives you a useful starting point.",
        "Tell me more and I can go deeper on any part of it.",
        "That is the short version; the details depend on your situation.",
        "Try the smallest version first and see what it teaches you.",
    ];

    private static readonly string[] Greetings =
    [
        "Hello! I am the AiStream simulated model.",
        "Hi there! This is the AiStream simulated model speaking.",
    ];

    private static readonly HashSet<string> StopWords = new(StringComparer.OrdinalIgnoreCase)
    {
        "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "about", "is", "are", "was", "be", "me",
        "you", "your", "my", "i", "it", "this", "that", "what", "how", "why", "can", "could", "would", "please", "tell",
        "explain", "do", "does", "should", "from", "by", "at", "as", "we", "our",
    };

    /// <summary>
    /// Plans the next turn. Offered tools, the model works through the ones the last user message asks for, one per
    /// turn and in the order the message mentions them, each with plausible arguments; once none is left it answers
    /// with what they returned. So an agent's whole multi-step trace is deterministic and runs offline.
    /// </summary>
    public static SimulatedPlan Plan(IList<ChatMessage> messages, ChatOptions? options)
    {
        var lastUserIndex = -1;
        for (var i = messages.Count - 1; i >= 0 && lastUserIndex < 0; i--)
        {
            lastUserIndex = messages[i].Role == ChatRole.User ? i : -1;
        }

        var lastUser = lastUserIndex >= 0 ? messages[lastUserIndex].Text : string.Empty;
        var since = messages.Skip(lastUserIndex + 1).ToList();
        var calls = since.SelectMany(m => m.Contents.OfType<FunctionCallContent>()).ToList();
        var results = since.SelectMany(m => m.Contents.OfType<FunctionResultContent>()).ToList();
        var random = new Random(Seed(lastUser) ^ since.Count);

        var lastResult = results.Count > 0 ? ResultText(results[^1]) : null;
        if (TryPlanToolCall(lastUser, options, random, calls, lastResult) is { } call)
        {
            var why = $"The question needs {call.Name.Replace('_', ' ')}, so I will call it with {ToolArguments.Serialize(call.Arguments)}.";
            return new SimulatedPlan([], call, Words(why));
        }

        if (results.Count > 0)
        {
            var found = results.Count == 1
                ? $"The tool answered: {Trim(ResultText(results[0]), 200)}"
                : "The tools answered: " + string.Join("; ", results.Select(r =>
                    $"{calls.FirstOrDefault(c => c.CallId == r.CallId)?.Name ?? "a tool"} gave {Trim(ResultText(r), 120).TrimEnd('.')}")) + ".";
            return new SimulatedPlan(Words(found + " Based on that, here is my summary. " + Body[random.Next(Body.Length)] + " " +
                Closers[random.Next(Closers.Length)]), null);
        }

        var text = new StringBuilder();
        var topic = Topic(lastUser);
        if (topic is null)
        {
            text.Append(Greetings[random.Next(Greetings.Length)]).Append(' ');
            text.Append("I stream my answers word by word, so you can watch them arrive. ");
            topic = "what you ask next";
        }

        var opener = string.Format(System.Globalization.CultureInfo.InvariantCulture, Openers[random.Next(Openers.Length)], topic);
        text.Append(char.ToUpperInvariant(opener[0])).Append(opener, 1, opener.Length - 1);
        var picked = Enumerable.Range(0, Body.Length).OrderBy(_ => random.Next()).Take(3 + random.Next(3));
        foreach (var index in picked)
        {
            text.Append(' ').Append(Body[index]);
        }

        text.Append(' ').Append(Closers[random.Next(Closers.Length)]);
        return new SimulatedPlan(Words(text.ToString()), null);
    }

    /// <summary>Splits text into stream chunks: each word carries its leading space, like a model's tokens.</summary>
    public static List<string> Words(string text)
    {
        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var words = new List<string>(parts.Length);
        for (var i = 0; i < parts.Length; i++)
        {
            words.Add(i == 0 ? parts[i] : " " + parts[i]);
        }

        return words;
    }

    private static FunctionCallContent? TryPlanToolCall(string prompt, ChatOptions? options, Random random, List<FunctionCallContent> called, string? lastResult)
    {
        var tools = options?.Tools?.OfType<AIFunctionDeclaration>().ToList();
        if (tools is null || tools.Count == 0 || options!.ToolMode is NoneChatToolMode)
        {
            return null;
        }

        AIFunctionDeclaration? chosen = null;
        if (options.ToolMode is RequiredChatToolMode required && lastResult is null)
        {
            chosen = required.RequiredFunctionName is { } name ? tools.FirstOrDefault(t => t.Name == name) : tools[0];
        }

        // The next tool the prompt asks for (by where it asks) that has not been called since it was asked.
        chosen ??= tools
            .Select((tool, order) => (Tool: tool, Order: order, At: AskedAt(prompt, tool)))
            .Where(t => t.At >= 0 && !called.Any(c => c.Name == t.Tool.Name))
            .OrderBy(t => t.At).ThenBy(t => t.Order)
            .Select(t => t.Tool)
            .FirstOrDefault();
        if (chosen is null)
        {
            return null;
        }

        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (chosen.JsonSchema.ValueKind == JsonValueKind.Object && chosen.JsonSchema.TryGetProperty("properties", out var properties)
            && properties.ValueKind == JsonValueKind.Object)
        {
            var subject = Subject(prompt);
            foreach (var property in properties.EnumerateObject())
            {
                var type = property.Value.ValueKind == JsonValueKind.Object && property.Value.TryGetProperty("type", out var t)
                    && t.ValueKind == JsonValueKind.String ? t.GetString() : "string";
                if (property.Value.ValueKind == JsonValueKind.Object && property.Value.TryGetProperty("enum", out var values)
                    && values.ValueKind == JsonValueKind.Array && values.GetArrayLength() > 0)
                {
                    arguments[property.Name] = JsonNode.Parse(values[0].GetRawText());
                    continue;
                }

                if (ArgumentFor(property.Name, prompt, subject, lastResult) is { } known)
                {
                    arguments[property.Name] = known;
                    continue;
                }

                if (Optional(chosen.JsonSchema, property.Name))
                {
                    continue; // a model leaves out what it need not say
                }

                arguments[property.Name] = type switch
                {
                    "integer" => 1 + random.Next(9),
                    "number" => 1.5,
                    "boolean" => true,
                    "array" => Array.Empty<string>(),
                    "object" => new Dictionary<string, object?>(),
                    _ => subject,
                };
            }
        }

        var callId = "call_" + Convert.ToHexStringLower(BitConverter.GetBytes(random.NextInt64()));
        return new FunctionCallContent(callId, chosen.Name, arguments);
    }

    /// <summary>
    /// Where in the prompt a tool is asked for, or -1: its name (underscores and dashes read as spaces), a part of its
    /// name longer than three letters other than "get", or, for a tool taking an <c>expression</c>, arithmetic.
    /// </summary>
    private static int AskedAt(string prompt, AIFunctionDeclaration tool)
    {
        var positions = new List<int>
        {
            prompt.IndexOf(tool.Name, StringComparison.OrdinalIgnoreCase),
            prompt.IndexOf(tool.Name.Replace('_', ' ').Replace('-', ' '), StringComparison.OrdinalIgnoreCase),
        };
        positions.AddRange(tool.Name.Split('_', '-').Where(p => p.Length > 3 && !p.Equals("get", StringComparison.OrdinalIgnoreCase))
            .Select(p => prompt.IndexOf(p, StringComparison.OrdinalIgnoreCase)));
        if (HasParameter(tool.JsonSchema, "expression") && Arithmetic().Match(prompt) is { Success: true } math)
        {
            positions.Add(math.Index);
        }

        return positions.Where(p => p >= 0).DefaultIfEmpty(-1).Min();
    }

    /// <summary>
    /// Arguments a model would read from the conversation: an arithmetic expression, a state path, and a value to
    /// record (what the last tool returned, else a quoted phrase, else the subject).
    /// </summary>
    private static string? ArgumentFor(string name, string prompt, string subject, string? lastResult) => name switch
    {
        "expression" when Arithmetic().Match(prompt) is { Success: true } math => math.Value.Trim(),
        "path" => "/" + (StateKeys.FirstOrDefault(k => prompt.Contains(k, StringComparison.OrdinalIgnoreCase)) ?? "notes"),
        "value" => JsonSerializer.Serialize(lastResult ?? (Quoted().Match(prompt) is { Success: true } quoted ? quoted.Groups[1].Value : subject)),
        _ => null,
    };

    private static readonly string[] StateKeys = ["title", "todo", "notes", "findings", "summary"];

    private static bool HasParameter(JsonElement schema, string name) =>
        schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("properties", out var properties)
        && properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(name, out _);

    private static bool Optional(JsonElement schema, string name) =>
        schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("required", out var required) && required.ValueKind == JsonValueKind.Array
        && !required.EnumerateArray().Any(r => r.ValueKind == JsonValueKind.String && r.GetString() == name);

    private static string ResultText(FunctionResultContent result) => result.Result switch
    {
        null => "nothing",
        string text => text,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString() ?? string.Empty,
        var other => other.ToString() ?? string.Empty,
    };

    [System.Text.RegularExpressions.GeneratedRegex(@"[(\d][\d\s.()]*[-+*/%][\d\s.()+*/%-]*\d\)?", System.Text.RegularExpressions.RegexOptions.None, 1000)]
    private static partial System.Text.RegularExpressions.Regex Arithmetic();

    [System.Text.RegularExpressions.GeneratedRegex("[\"“']([^\"”']{1,200})[\"”']", System.Text.RegularExpressions.RegexOptions.None, 1000)]
    private static partial System.Text.RegularExpressions.Regex Quoted();

    private static string? Topic(string prompt)
    {
        var words = prompt.Split([' ', '\n', '\t', ',', '.', '?', '!', ';', ':'], StringSplitOptions.RemoveEmptyEntries)
            .Where(w => w.Length > 2 && !StopWords.Contains(w))
            .Take(4)
            .ToList();
        if (words.Count == 0 || (words.Count == 1 && words[0].Equals("hello", StringComparison.OrdinalIgnoreCase)))
        {
            return null;
        }

        var topic = string.Join(' ', words);
        return char.ToUpperInvariant(topic[0]) + topic[1..];
    }

    /// <summary>A plausible string argument: the last capitalised word of the prompt, else its last word.</summary>
    private static string Subject(string prompt)
    {
        var words = prompt.Split([' ', '\n', '\t', ',', '.', '?', '!', ';', ':'], StringSplitOptions.RemoveEmptyEntries);
        var capitalised = words.Skip(1).LastOrDefault(w => char.IsUpper(w[0]));
        return capitalised ?? words.LastOrDefault() ?? "example";
    }

    private static string Trim(string text, int max) => text.Length <= max ? text : text[..max] + "…";

    private static int Seed(string text)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(text), hash);
        return BitConverter.ToInt32(hash);
    }
}
