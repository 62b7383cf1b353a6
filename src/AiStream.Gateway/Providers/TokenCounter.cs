using Microsoft.ML.Tokenizers;

namespace AiStream.Gateway.Providers;

/// <summary>
/// Counts tokens with the o200k_base tiktoken encoding (GPT-4o family). Used where an upstream reports no usage,
/// and by the simulated model. Counts for other model families are estimates, labelled as such in metrics.
/// </summary>
internal sealed class TokenCounter
{
    // Loading the vocabulary takes a few hundred milliseconds and it is immutable and thread-safe: load it once per
    // process, off the request path where possible.
    private static readonly Lazy<Tokenizer> SharedTokenizer = new(() => TiktokenTokenizer.CreateForModel("gpt-4o"));
    private readonly Lazy<Tokenizer> _tokenizer = SharedTokenizer;

    /// <summary>Loads the vocabulary now, so the first request does not pay for it.</summary>
    public void Warm() => _ = _tokenizer.Value;

    public bool IsLoaded => _tokenizer.IsValueCreated;

    public int Count(ReadOnlySpan<char> text) => text.IsEmpty ? 0 : _tokenizer.Value.CountTokens(text);

    /// <summary>
    /// Prompt tokens the way OpenAI's cookbook counts chat input: 3 per message, the role and content, 1 more for a name,
    /// and 3 for the reply's priming.
    /// </summary>
    public int CountPrompt(IEnumerable<(string Role, string? Name, string Content)> messages, string? toolsJson)
    {
        var total = 3;
        foreach (var (role, name, content) in messages)
        {
            total += 3 + Count(role) + Count(content);
            if (!string.IsNullOrEmpty(name))
            {
                total += 1 + Count(name);
            }
        }

        if (!string.IsNullOrEmpty(toolsJson))
        {
            total += Count(toolsJson);
        }

        return total;
    }
}
