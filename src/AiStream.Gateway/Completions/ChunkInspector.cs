using System.Buffers;
using System.Text.Json;

namespace AiStream.Gateway.Completions;

/// <summary>What one chunk told us.</summary>
[Flags]
internal enum ChunkFlags
{
    None = 0,
    /// <summary>Carries a non-null <c>usage</c> object.</summary>
    HasUsage = 1,
    /// <summary><c>choices</c> is present and empty.</summary>
    EmptyChoices = 2,
    /// <summary>Carries a non-null <c>finish_reason</c>.</summary>
    Finished = 4,
    /// <summary>Carries an <c>error</c> object: the upstream reported a failure in-band.</summary>
    Error = 8,
}

/// <summary>
/// Peeks at the fields the gateway needs (usage, finish_reason, error, generated text for estimating usage) in
/// chunks it relays untouched. A forward-only <see cref="Utf8JsonReader"/> over the bytes already in hand: no DOM,
/// no re-serialisation, and the generated text goes into one pooled buffer.
/// </summary>
internal sealed class UsageTally : IDisposable
{
    private char[] _text = ArrayPool<char>.Shared.Rent(1024);
    private int _textLength;

    public long? PromptTokens { get; private set; }

    public long? CompletionTokens { get; private set; }

    public bool SawFinish { get; private set; }

    public bool SawError { get; private set; }

    /// <summary>Generated text so far (content, reasoning, tool names and arguments), for counting when usage is missing.</summary>
    public ReadOnlySpan<char> GeneratedText => _text.AsSpan(0, _textLength);

    public ChunkFlags Inspect(ReadOnlySpan<byte> json)
    {
        var flags = ChunkFlags.None;
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return flags;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("choices"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartArray)
                    {
                        var count = 0;
                        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
                        {
                            count++;
                            ReadChoice(ref reader, ref flags);
                        }

                        if (count == 0)
                        {
                            flags |= ChunkFlags.EmptyChoices;
                        }
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("usage"u8))
                {
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        flags |= ChunkFlags.HasUsage;
                        ReadUsage(ref reader);
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else if (reader.ValueTextEquals("error"u8))
                {
                    reader.Read();
                    if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.String)
                    {
                        flags |= ChunkFlags.Error;
                        SawError = true;
                    }

                    reader.Skip();
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // A chunk we cannot read is still relayed as it came; it just tells us nothing.
        }

        return flags;
    }

    private void ReadChoice(ref Utf8JsonReader reader, ref ChunkFlags flags)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("delta"u8) || reader.ValueTextEquals("message"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.StartObject)
                {
                    ReadDelta(ref reader);
                }
                else
                {
                    reader.Skip();
                }
            }
            else if (reader.ValueTextEquals("finish_reason"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.String)
                {
                    flags |= ChunkFlags.Finished;
                    SawFinish = true;
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    private void ReadDelta(ref Utf8JsonReader reader)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("content"u8) || reader.ValueTextEquals("reasoning_content"u8) || reader.ValueTextEquals("refusal"u8))
            {
                reader.Read();
                AppendIfString(ref reader);
            }
            else if (reader.ValueTextEquals("tool_calls"u8))
            {
                reader.Read();
                if (reader.TokenType != JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
                {
                    while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                    {
                        if (reader.ValueTextEquals("function"u8))
                        {
                            reader.Read();
                            if (reader.TokenType != JsonTokenType.StartObject)
                            {
                                reader.Skip();
                                continue;
                            }

                            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                            {
                                reader.Read();
                                AppendIfString(ref reader);
                                reader.Skip();
                            }
                        }
                        else
                        {
                            reader.Read();
                            reader.Skip();
                        }
                    }
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    private void ReadUsage(ref Utf8JsonReader reader)
    {
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("prompt_tokens"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var prompt))
                {
                    PromptTokens = prompt;
                }
            }
            else if (reader.ValueTextEquals("completion_tokens"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var completion))
                {
                    CompletionTokens = completion;
                }
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }
    }

    private void AppendIfString(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            return;
        }

        var max = reader.ValueSpan.Length;
        if (_textLength + max > _text.Length)
        {
            var bigger = ArrayPool<char>.Shared.Rent(Math.Max(_text.Length * 2, _textLength + max));
            _text.AsSpan(0, _textLength).CopyTo(bigger);
            ArrayPool<char>.Shared.Return(_text);
            _text = bigger;
        }

        // Unescaped text is decoded leniently (invalid UTF-8 becomes U+FFFD) so a bad byte never costs the count.
        _textLength += reader.ValueIsEscaped
            ? reader.CopyString(_text.AsSpan(_textLength))
            : System.Text.Encoding.UTF8.GetChars(reader.ValueSpan, _text.AsSpan(_textLength));
    }

    public void Dispose()
    {
        var text = _text;
        _text = [];
        if (text.Length > 0)
        {
            ArrayPool<char>.Shared.Return(text);
        }
    }
}
