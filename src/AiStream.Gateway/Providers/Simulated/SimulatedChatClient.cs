using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Providers.Simulated;

/// <summary>
/// The built-in model: a real <see cref="IChatClient"/> that streams deterministic prose word by word at a configured
/// pace, streams tool calls (reasoning, then the arguments piece by piece) when offered tools and asked for them, and reports usage counted with a real tokenizer.
/// </summary>
internal sealed class SimulatedChatClient(string modelId, ProviderOptions provider, TokenCounter tokens, TimeProvider time) : IChatClient
{
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        => await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages,
        ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var list = messages as IList<ChatMessage> ?? messages.ToList();
        var plan = SimulatedScript.Plan(list, options);
        var responseId = "chatcmpl-sim-" + Guid.NewGuid().ToString("N")[..24];
        var created = time.GetUtcNow();
        var promptTokens = tokens.CountPrompt(list.Select(m => (m.Role.Value, m.AuthorName, m.Text)), null, cancellationToken);
        var maxTokens = options?.MaxOutputTokens is int max and > 0 ? max : int.MaxValue;

        if (provider.TimeToFirstTokenMs > 0)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(provider.TimeToFirstTokenMs), time, cancellationToken).ConfigureAwait(false);
        }

        ChatResponseUpdate Update(params AIContent[] contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId,
            MessageId = responseId,
            CreatedAt = created,
            ModelId = modelId,
        };

        var completionTokens = 0;
        ChatFinishReason finish = ChatFinishReason.Stop;
        var gap = provider.TokensPerSecond > 0 ? TimeSpan.FromSeconds(1 / provider.TokensPerSecond) : TimeSpan.Zero;
        if (plan.ToolCall is { } call)
        {
            // Like a reasoning model: why it calls the tool, then the call with its arguments streamed in pieces.
            foreach (var word in plan.Thinking ?? [])
            {
                completionTokens += tokens.Count(word, cancellationToken);
                yield return Update(new TextReasoningContent(word));
                await Pause(gap, cancellationToken).ConfigureAwait(false);
            }

            var arguments = ToolArguments.Serialize(call.Arguments);
            for (var at = 0; at < arguments.Length || at == 0; at += ArgumentPiece)
            {
                var piece = arguments.Substring(at, Math.Min(ArgumentPiece, arguments.Length - at));
                yield return Update(new ToolCallDeltaContent(new ToolCallDelta(0, at == 0 ? call.CallId : null, at == 0 ? call.Name : null, piece)));
                await Pause(gap, cancellationToken).ConfigureAwait(false);
            }

            yield return Update(call);
            completionTokens += tokens.Count(call.Name, cancellationToken) + tokens.Count(arguments, cancellationToken);
            finish = ChatFinishReason.ToolCalls;
        }
        else
        {
            for (var i = 0; i < plan.Words.Count; i++)
            {
                var word = plan.Words[i];
                var cost = tokens.Count(word, cancellationToken);
                if (completionTokens + cost > maxTokens)
                {
                    finish = ChatFinishReason.Length;
                    break;
                }

                if (i > 0 && gap > TimeSpan.Zero)
                {
                    await Task.Delay(gap, time, cancellationToken).ConfigureAwait(false);
                }

                completionTokens += cost;
                yield return Update(new TextContent(word));
            }
        }

        var last = Update(new UsageContent(new UsageDetails
        {
            InputTokenCount = promptTokens,
            OutputTokenCount = completionTokens,
            TotalTokenCount = promptTokens + completionTokens,
        }));
        last.FinishReason = finish;
        yield return last;
    }

    /// <summary>Characters of tool-call arguments per streamed piece.</summary>
    private const int ArgumentPiece = 8;

    private Task Pause(TimeSpan gap, CancellationToken cancellationToken) =>
        gap > TimeSpan.Zero ? Task.Delay(gap, time, cancellationToken) : Task.CompletedTask;

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is null && serviceType.IsInstanceOfType(this) ? this :
        serviceKey is null && serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("aistream-simulated", null, modelId) :
        null;

    public void Dispose()
    {
    }
}
