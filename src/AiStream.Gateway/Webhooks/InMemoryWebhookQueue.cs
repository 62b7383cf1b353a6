using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Webhooks;

/// <summary>Deliveries on one node: a bounded channel, and the newest failures.</summary>
internal sealed class InMemoryWebhookQueue(IOptions<WebhookDeliveryOptions> options) : IWebhookQueue
{
    private readonly Channel<WebhookDelivery> _queue = Channel.CreateBounded<WebhookDelivery>(
        new BoundedChannelOptions(options.Value.QueueCapacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });

    private readonly LinkedList<WebhookFailure> _failures = new();
    private long _bytes;

    /// <summary>Queues it unless the queue is full by count or by bytes (<c>QueueCapacity</c>, <c>QueueBytes</c>).</summary>
    public bool TryEnqueue(WebhookDelivery delivery)
    {
        if (Interlocked.Add(ref _bytes, delivery.Body.Length) > options.Value.QueueBytes || !_queue.Writer.TryWrite(delivery))
        {
            Interlocked.Add(ref _bytes, -delivery.Body.Length);
            return false;
        }

        return true;
    }

    public async IAsyncEnumerable<WebhookDelivery> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var delivery in _queue.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            Interlocked.Add(ref _bytes, -delivery.Body.Length);
            yield return delivery;
        }
    }

    public ValueTask CompleteAsync(WebhookDelivery delivery, WebhookFailure? failure)
    {
        if (failure is not null)
        {
            lock (_failures)
            {
                _failures.AddFirst(failure);
                while (_failures.Count > options.Value.MaxFailures)
                {
                    _failures.RemoveLast();
                }
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<IReadOnlyList<WebhookFailure>> FailuresAsync(CancellationToken cancellationToken)
    {
        lock (_failures)
        {
            return ValueTask.FromResult<IReadOnlyList<WebhookFailure>>([.. _failures]);
        }
    }
}
