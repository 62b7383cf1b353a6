using System.Net;
using System.Text;
using Microsoft.Extensions.Options;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace AiStream.Gateway.Webhooks;

/// <summary>
/// Sends deliveries: at most <c>Concurrency</c> at once, each attempt signed afresh (a new <c>webhook-timestamp</c>,
/// the same <c>webhook-id</c> and body), retried with exponential backoff and jitter by Polly on network errors,
/// timeouts, 408, 429 and 5xx. A delivery that keeps failing is recorded for <c>GET /api/webhooks/failures</c>.
/// </summary>
internal sealed partial class WebhookSender(
    IWebhookQueue queue,
    IHttpClientFactory http,
    IOptionsMonitor<WebhooksOptions> subscriptions,
    IOptions<WebhookDeliveryOptions> options,
    TimeProvider time,
    ILogger<WebhookSender> logger) : BackgroundService
{
    public const string HttpClientName = "aistream-webhooks";

    private readonly ResiliencePipeline<HttpResponseMessage> _pipeline = Pipeline(options.Value, time);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (subscriptions.CurrentValue.Subscriptions.Count == 0)
        {
            return; // no subscription: nothing to send, and no queue to poll (adding one takes a restart)
        }

        using var slots = new SemaphoreSlim(options.Value.Concurrency);
        var running = new HashSet<Task>();
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SendAllAsync(slots, running, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
            }
            catch (Exception ex)
            {
                // Whatever the queue throws, the sender goes on (and never takes the host down with it).
                Log.QueueFailed(logger, ex);
                await Task.Delay(TimeSpan.FromSeconds(1), time, stoppingToken).ConfigureAwait(false);
            }
        }

        Task[] left;
        lock (running)
        {
            left = [.. running];
        }

        await Task.WhenAll(left).ConfigureAwait(false);
    }

    private async Task SendAllAsync(SemaphoreSlim slots, HashSet<Task> running, CancellationToken stoppingToken)
    {
        await using var deliveries = queue.ReadAllAsync(stoppingToken).GetAsyncEnumerator(stoppingToken);
        while (true)
        {
            // A delivery is taken from the queue only when a slot is free, so what this node took, it is sending.
            await slots.WaitAsync(stoppingToken).ConfigureAwait(false);
            bool more;
            try
            {
                more = await deliveries.MoveNextAsync().ConfigureAwait(false);
            }
            catch
            {
                slots.Release();
                throw;
            }

            if (!more)
            {
                slots.Release();
                return;
            }

            var delivery = deliveries.Current;
            var task = Task.Run(async () =>
            {
                try
                {
                    await DeliverAsync(delivery, stoppingToken).ConfigureAwait(false);
                }
                finally
                {
                    slots.Release();
                }
            }, CancellationToken.None);
            lock (running)
            {
                running.Add(task);
            }

            _ = task.ContinueWith(t => { lock (running) { running.Remove(t); } }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    /// <summary>Sends one delivery with its retries, then completes it (recording a failure when it never got through).</summary>
    internal async Task DeliverAsync(WebhookDelivery delivery, CancellationToken stoppingToken)
    {
        if (!subscriptions.CurrentValue.Subscriptions.TryGetValue(delivery.Subscription, out var subscription)
            || WebhookSigner.ParseSecret(subscription.Secret) is not { } key || subscription.Url is null)
        {
            await queue.CompleteAsync(delivery, null).ConfigureAwait(false); // the subscription was removed
            return;
        }

        var attempts = 0;
        int? status = null;
        string? error = null;
        try
        {
            using var response = await _pipeline.ExecuteAsync(async token =>
            {
                attempts++;
                var timestamp = time.GetUtcNow().ToUnixTimeSeconds();
                using var request = new HttpRequestMessage(HttpMethod.Post, subscription.Url)
                {
                    Content = new StringContent(delivery.Body, Encoding.UTF8, "application/json"),
                };
                request.Headers.Add("webhook-id", delivery.Id);
                request.Headers.Add("webhook-timestamp", timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
                request.Headers.Add("webhook-signature", WebhookSigner.Sign(key, delivery.Id, timestamp, delivery.Body));
                var answer = await http.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, token).ConfigureAwait(false);
                status = (int)answer.StatusCode;
                error = answer.IsSuccessStatusCode ? null : $"the receiver answered {status}";
                return answer;
            }, stoppingToken).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                Log.Delivered(logger, delivery.Id, delivery.Subscription, attempts);
                await queue.CompleteAsync(delivery, null).ConfigureAwait(false);
                return;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            return; // stopping: with Redis another node takes the delivery over
        }
        catch (Exception ex) when (ex is HttpRequestException or TimeoutRejectedException or OperationCanceledException or IOException)
        {
            status = null;
            error = ex is TimeoutRejectedException ? $"no answer within {options.Value.TimeoutSeconds} s" : ex.Message;
        }
        catch (Exception ex)
        {
            // Anything else (a URL a reload made invalid, …) is a failed delivery too: it is recorded, never left pending.
            status = null;
            error = ex.GetType().Name + ": " + ex.Message;
        }

        Log.Failed(logger, delivery.Id, delivery.Subscription, attempts, error ?? "unknown");
        await queue.CompleteAsync(delivery, new WebhookFailure(delivery.Subscription, delivery.Id, delivery.Type, delivery.SessionId, delivery.Seq,
            attempts, status, error ?? "unknown", time.GetUtcNow())).ConfigureAwait(false);
    }

    private static ResiliencePipeline<HttpResponseMessage> Pipeline(WebhookDeliveryOptions o, TimeProvider time)
    {
        var builder = new ResiliencePipelineBuilder<HttpResponseMessage> { TimeProvider = time };
        if (o.MaxAttempts > 1)
        {
            builder.AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = o.MaxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = TimeSpan.FromMilliseconds(o.FirstRetryMilliseconds),
                MaxDelay = TimeSpan.FromSeconds(o.MaxRetrySeconds),
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .Handle<TimeoutRejectedException>()
                    .Handle<IOException>()
                    .HandleResult(r => r.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests || (int)r.StatusCode >= 500),
                // A receiver's Retry-After (a delay in seconds) is honoured, within the longest delay.
                DelayGenerator = args => ValueTask.FromResult(args.Outcome.Result?.Headers.RetryAfter?.Delta is { } wait
                    ? (TimeSpan?)TimeSpan.FromSeconds(Math.Min(wait.TotalSeconds, o.MaxRetrySeconds)) : null),
            });
        }

        return builder.AddTimeout(TimeSpan.FromSeconds(o.TimeoutSeconds)).Build();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9102, Level = LogLevel.Debug, Message = "Webhook {Id} delivered to {Subscription} after {Attempts} attempts")]
        public static partial void Delivered(ILogger logger, string id, string subscription, int attempts);

        [LoggerMessage(EventId = 9104, Level = LogLevel.Warning, Message = "Webhook queue failed; reading again in a second")]
        public static partial void QueueFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 9103, Level = LogLevel.Warning, Message = "Webhook {Id} to {Subscription} failed after {Attempts} attempts: {Error}")]
        public static partial void Failed(ILogger logger, string id, string subscription, int attempts, string error);
    }
}
