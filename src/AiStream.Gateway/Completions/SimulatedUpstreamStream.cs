using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Completions;

/// <summary>Streams an <see cref="IChatClient"/> (the simulated model) as OpenAI chunk payloads.</summary>
internal sealed class SimulatedUpstreamStream(
    IChatClient client, List<ChatMessage> messages, ChatOptions options, ChunkRenderer renderer, TimeProvider time, CancellationToken clientAborted)
    : UpstreamStream(time, clientAborted)
{
    private readonly Queue<byte[]> _pending = new();
    private IAsyncEnumerator<ChatResponseUpdate>? _updates;

    protected override Task ConnectAsync()
    {
        _updates = client.GetStreamingResponseAsync(messages, options, Token).GetAsyncEnumerator(Token);
        return Task.CompletedTask;
    }

    protected override async ValueTask<bool> ReadCoreAsync()
    {
        while (_pending.Count == 0)
        {
            if (!await _updates!.MoveNextAsync().ConfigureAwait(false))
            {
                SawDone = true;
                return false;
            }

            foreach (var chunk in renderer.Render(_updates.Current))
            {
                _pending.Enqueue(chunk);
            }
        }

        Current = _pending.Dequeue();
        return true;
    }

    protected override async ValueTask DisposeCoreAsync()
    {
        if (_updates is not null)
        {
            await _updates.DisposeAsync().ConfigureAwait(false);
        }
    }
}
