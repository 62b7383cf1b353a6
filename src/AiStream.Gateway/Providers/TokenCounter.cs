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

    /// <summary>Longest run without whitespace counted as one piece: byte-pair merging is quadratic in a piece's length.</summary>
    internal const int MaxRun = 128;

    /// <summary>Text is counted in pieces of about this many characters, cut before a space that starts a word.</summary>
    internal const int ChunkChars = 4096;

    /// <summary>
    /// Counts the tokens of <paramref name="text"/> in bounded time. Byte-pair encoding costs the square of a word's
    /// length (one 200,000-character word took 24 s), so runs without whitespace longer than <see cref="MaxRun"/> are
    /// counted in pieces of that length, and long text in pieces of about <see cref="ChunkChars"/> characters cut before a
    /// space that starts a word (where the pre-tokenizer splits anyway), checking <paramref name="cancellationToken"/> between
    /// pieces. Ordinary text counts exactly as in one call; a giant word counts a few tokens more than it would whole.
    /// </summary>
    public int Count(ReadOnlySpan<char> text, CancellationToken cancellationToken = default)
    {
        if (text.IsEmpty)
        {
            return 0;
        }

        var tokenizer = _tokenizer.Value;
        var total = 0;
        var start = 0;
        var run = 0;
        for (var i = 0; i < text.Length; i++)
        {
            // Cut before a space that starts a word (" word" stays one pre-token either way), or inside a giant run.
            var cut = char.IsWhiteSpace(text[i])
                ? text[i] == ' ' && i > 0 && !char.IsWhiteSpace(text[i - 1]) && i - start >= ChunkChars
                : run >= MaxRun;
            if (cut)
            {
                total += tokenizer.CountTokens(text[start..i]);
                start = i;
                run = 0;
                cancellationToken.ThrowIfCancellationRequested();
            }

            run = char.IsWhiteSpace(text[i]) ? 0 : run + 1;
        }

        return total + tokenizer.CountTokens(text[start..]);
    }

    /// <summary>
    /// Prompt tokens the way OpenAI's cookbook counts chat input: 3 per message, the role and content, 1 more for a name,
    /// and 3 for the reply's priming.
    /// </summary>
    public int CountPrompt(IEnumerable<(string Role, string? Name, string Content)> messages, string? toolsJson, CancellationToken cancellationToken = default)
    {
        var total = 3;
        foreach (var (role, name, content) in messages)
        {
            total += 3 + Count(role, cancellationToken) + Count(content, cancellationToken);
            if (!string.IsNullOrEmpty(name))
            {
                total += 1 + Count(name, cancellationToken);
            }
        }

        if (!string.IsNullOrEmpty(toolsJson))
        {
            total += Count(toolsJson, cancellationToken);
        }

        return total;
    }
}
