using System.Buffers;
using System.Text.Json;
using AiStream.Gateway.Providers;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Completions;

/// <summary>
/// Renders Microsoft.Extensions.AI updates as OpenAI <c>chat.completion.chunk</c> and <c>chat.completion</c> JSON,
/// for providers that are <see cref="IChatClient"/>s (the simulated model).
/// </summary>
internal sealed class ChunkRenderer(string id, string model, long created)
{
    private readonly ArrayBufferWriter<byte> _buffer = new(512);
    private bool _sentRole;
    private int _toolIndex;

    /// <summary>Chunks for one update, in order.</summary>
    public IEnumerable<byte[]> Render(ChatResponseUpdate update)
    {
        if (!_sentRole)
        {
            _sentRole = true;
            yield return Chunk(w =>
            {
                w.WriteString("role", "assistant");
                w.WriteString("content", string.Empty);
            }, null);
        }

        foreach (var content in update.Contents)
        {
            switch (content)
            {
                case TextContent { Text.Length: > 0 } text:
                    yield return Chunk(w => w.WriteString("content", text.Text), null);
                    break;
                case TextReasoningContent { Text.Length: > 0 } reasoning:
                    yield return Chunk(w => w.WriteString("reasoning_content", reasoning.Text), null);
                    break;
                case FunctionCallContent call:
                    var index = _toolIndex++;
                    yield return Chunk(w => ToolCall(w, index, call.CallId, call.Name, string.Empty), null);
                    var arguments = ToolArguments.Serialize(call.Arguments);
                    // Arguments arrive in pieces, the way real models stream them.
                    var piece = Math.Max(1, (arguments.Length + 2) / 3);
                    for (var start = 0; start < arguments.Length; start += piece)
                    {
                        var part = arguments.Substring(start, Math.Min(piece, arguments.Length - start));
                        yield return Chunk(w => ToolCall(w, index, null, null, part), null);
                    }

                    break;
            }
        }

        if (update.FinishReason is { } finish)
        {
            yield return Chunk(_ => { }, FinishReason(finish));
        }

        if (update.Contents.OfType<UsageContent>().FirstOrDefault() is { } usage)
        {
            yield return UsageChunk(usage.Details);
        }
    }

    /// <summary>A whole <c>chat.completion</c> for a non-streamed request.</summary>
    public byte[] RenderCompletion(ChatResponse response)
    {
        _buffer.ResetWrittenCount();
        using (var w = new Utf8JsonWriter(_buffer))
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "chat.completion");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            w.WriteStartObject("message");
            w.WriteString("role", "assistant");
            var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().ToList();
            if (calls.Count > 0)
            {
                w.WriteNull("content");
                w.WriteStartArray("tool_calls");
                foreach (var call in calls)
                {
                    w.WriteStartObject();
                    w.WriteString("id", call.CallId);
                    w.WriteString("type", "function");
                    w.WriteStartObject("function");
                    w.WriteString("name", call.Name);
                    w.WriteString("arguments", ToolArguments.Serialize(call.Arguments));
                    w.WriteEndObject();
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            }
            else
            {
                w.WriteString("content", response.Text);
            }

            w.WriteEndObject();
            w.WriteString("finish_reason", FinishReason(response.FinishReason ?? ChatFinishReason.Stop));
            w.WriteEndObject();
            w.WriteEndArray();
            if (response.Usage is { } usage)
            {
                WriteUsage(w, usage);
            }

            w.WriteEndObject();
        }

        return _buffer.WrittenSpan.ToArray();
    }

    private byte[] UsageChunk(UsageDetails usage)
    {
        _buffer.ResetWrittenCount();
        using (var w = new Utf8JsonWriter(_buffer))
        {
            Header(w);
            w.WriteStartArray("choices");
            w.WriteEndArray();
            WriteUsage(w, usage);
            w.WriteEndObject();
        }

        return _buffer.WrittenSpan.ToArray();
    }

    private byte[] Chunk(Action<Utf8JsonWriter> delta, string? finishReason)
    {
        _buffer.ResetWrittenCount();
        using (var w = new Utf8JsonWriter(_buffer))
        {
            Header(w);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            w.WriteStartObject("delta");
            delta(w);
            w.WriteEndObject();
            if (finishReason is null)
            {
                w.WriteNull("finish_reason");
            }
            else
            {
                w.WriteString("finish_reason", finishReason);
            }

            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }

        return _buffer.WrittenSpan.ToArray();
    }

    private void Header(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "chat.completion.chunk");
        w.WriteNumber("created", created);
        w.WriteString("model", model);
    }

    private static void ToolCall(Utf8JsonWriter w, int index, string? callId, string? name, string arguments)
    {
        w.WriteStartArray("tool_calls");
        w.WriteStartObject();
        w.WriteNumber("index", index);
        if (callId is not null)
        {
            w.WriteString("id", callId);
            w.WriteString("type", "function");
        }

        w.WriteStartObject("function");
        if (name is not null)
        {
            w.WriteString("name", name);
        }

        w.WriteString("arguments", arguments);
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndArray();
    }

    private static void WriteUsage(Utf8JsonWriter w, UsageDetails usage)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", usage.InputTokenCount ?? 0);
        w.WriteNumber("completion_tokens", usage.OutputTokenCount ?? 0);
        w.WriteNumber("total_tokens", usage.TotalTokenCount ?? (usage.InputTokenCount ?? 0) + (usage.OutputTokenCount ?? 0));
        w.WriteEndObject();
    }

    private static string FinishReason(ChatFinishReason reason) =>
        reason == ChatFinishReason.ToolCalls ? "tool_calls" :
        reason == ChatFinishReason.Length ? "length" :
        reason == ChatFinishReason.ContentFilter ? "content_filter" :
        "stop";
}
