using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using AiStream.Gateway.Webhooks;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// Webhook deliveries shared by every node: a Redis stream read through one consumer group, so each delivery is
/// handed to exactly one node. A node renews the deliveries it is sending every half node timeout; the deliveries of
/// a node that stopped renewing (it died) are claimed by another after twice the node timeout and sent again under
/// the same <c>webhook-id</c>. Queuing is local and never waits on Redis: a writer moves deliveries to the stream,
/// each once (a short-lived marker per <c>webhook-id</c> drops the copies that several nodes seeing one event make).
/// </summary>
internal sealed partial class RedisWebhookQueue : IWebhookQueue, IDisposable
{
    private const string Group = "aistream-webhooks";

    /// <summary>Adds a delivery once: a marker per webhook-id (a day) and the stream entry, in one step.</summary>
    private const string EnqueueScript = """
        if redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400) then
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'd', ARGV[1])
        end
        return 1
        """;

    private readonly RedisConnection _redis;
    private readonly WebhookDeliveryOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<RedisWebhookQueue> _logger;
    private readonly RedisKey _stream;
    private readonly RedisKey _failures;
    private readonly string _seenPrefix;
    private readonly TimeSpan _claimAfter;
    private readonly Channel<WebhookDelivery> _outbox;
    private readonly Dictionary<string, WebhookDelivery> _sending = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly ITimer _renewal;
    private bool _grouped;
    private long _outboxBytes;

    // Where the next look for a dead node's deliveries starts: XAUTOCLAIM examines a bounded part of the pending list
    // per call, so the look walks the list across polls instead of re-reading its head (the live nodes' deliveries).
    private RedisValue _claimCursor = "0-0";

    public RedisWebhookQueue(RedisConnection redis, IOptions<WebhookDeliveryOptions> options, IOptions<ScaleoutOptions> scaleout, TimeProvider time,
        ILogger<RedisWebhookQueue> logger)
    {
        _redis = redis;
        _options = options.Value;
        _time = time;
        _logger = logger;
        var prefix = scaleout.Value.KeyPrefix;
        _stream = prefix + "{webhooks}:q";
        _failures = prefix + "{webhooks}:failed";
        _seenPrefix = prefix + "{webhooks}:seen:";
        var nodeTimeout = TimeSpan.FromSeconds(scaleout.Value.NodeTimeoutSeconds);
        _claimAfter = nodeTimeout * 2;
        _outbox = Channel.CreateBounded<WebhookDelivery>(new BoundedChannelOptions(_options.QueueCapacity) { SingleReader = true });
        _renewal = time.CreateTimer(_ => _ = RenewAsync(), null, nodeTimeout / 2, nodeTimeout / 2);
        _ = Task.Run(WriteAsync);
    }

    /// <summary>Queues it for the writer unless the outbox is full by count or by bytes (<c>QueueCapacity</c>, <c>QueueBytes</c>).</summary>
    public bool TryEnqueue(WebhookDelivery delivery)
    {
        if (Interlocked.Add(ref _outboxBytes, delivery.Body.Length) > _options.QueueBytes || !_outbox.Writer.TryWrite(delivery))
        {
            Interlocked.Add(ref _outboxBytes, -delivery.Body.Length);
            return false;
        }

        return true;
    }

    public async IAsyncEnumerable<WebhookDelivery> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var idle = TimeSpan.FromMilliseconds(200);
        while (!cancellationToken.IsCancellationRequested)
        {
            WebhookDelivery? next = null;
            try
            {
                await EnsureGroupAsync().ConfigureAwait(false);
                // A dead node's deliveries first, then new ones.
                var claimed = await _redis.Database.StreamAutoClaimAsync(_stream, Group, _redis.NodeId, (long)_claimAfter.TotalMilliseconds, _claimCursor, 1)
                    .ConfigureAwait(false);
                _claimCursor = claimed.NextStartId.IsNullOrEmpty ? "0-0" : claimed.NextStartId;
                next = Take(claimed.ClaimedEntries, claimed: true);
                if (next is null)
                {
                    var entries = await _redis.Database.StreamReadGroupAsync(_stream, Group, _redis.NodeId, ">", 1).ConfigureAwait(false);
                    next = Take(entries, claimed: false);
                }
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                // Redis away, or the stream or its group gone (a restart without persistence, a flush, a failover):
                // make the group again on the next poll. Nothing here may end the sender, let alone the host.
                if (ex is RedisServerException { Message: var message } && message.StartsWith("NOGROUP", StringComparison.Ordinal))
                {
                    _grouped = false;
                }

                Log.Unavailable(_logger, ex.Message);
                idle = TimeSpan.FromSeconds(1);
            }

            if (next is not null)
            {
                yield return next;
                continue;
            }

            await Task.Delay(idle, _time, cancellationToken).ConfigureAwait(false);
            idle = TimeSpan.FromMilliseconds(200);
        }
    }

    public async ValueTask CompleteAsync(WebhookDelivery delivery, WebhookFailure? failure)
    {
        lock (_sending)
        {
            _sending.Remove(delivery.QueueId!);
        }

        try
        {
            var database = _redis.Database;
            var batch = database.CreateBatch();
            var acknowledged = batch.StreamAcknowledgeAsync(_stream, Group, delivery.QueueId!);
            var deleted = batch.StreamDeleteAsync(_stream, [delivery.QueueId!]);
            Task? recorded = null;
            if (failure is not null)
            {
                recorded = batch.ListLeftPushAsync(_failures, JsonSerializer.Serialize(failure, WebhooksJsonContext.Default.WebhookFailure));
                _ = batch.ListTrimAsync(_failures, 0, _options.MaxFailures - 1, CommandFlags.FireAndForget);
            }

            batch.Execute();
            await Task.WhenAll(recorded is null ? [acknowledged, deleted] : [acknowledged, deleted, recorded]).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            // Not acknowledged: another node sends it again after the claim delay (at least once, same webhook-id).
            Log.Unavailable(_logger, ex.Message);
        }
    }

    public async ValueTask<IReadOnlyList<WebhookFailure>> FailuresAsync(CancellationToken cancellationToken)
    {
        var values = await _redis.Database.ListRangeAsync(_failures, 0, _options.MaxFailures - 1).ConfigureAwait(false);
        return [.. values.Select(v => JsonSerializer.Deserialize((string)v!, WebhooksJsonContext.Default.WebhookFailure)!)];
    }

    public void Dispose()
    {
        _stop.Cancel();
        _renewal.Dispose();
        _stop.Dispose();
    }

    private WebhookDelivery? Take(StreamEntry[] entries, bool claimed)
    {
        foreach (var entry in entries)
        {
            if (entry.IsNull || entry["d"] is not { IsNullOrEmpty: false } json)
            {
                continue;
            }

            WebhookDelivery delivery;
            try
            {
                delivery = JsonSerializer.Deserialize((string)json!, WebhooksJsonContext.Default.WebhookDelivery)! with { QueueId = entry.Id! };
            }
            catch (JsonException)
            {
                // Not one of ours: drop it so it is not handed out again.
                _ = _redis.Database.StreamAcknowledgeAsync(_stream, Group, entry.Id, CommandFlags.FireAndForget);
                _ = _redis.Database.StreamDeleteAsync(_stream, [entry.Id], CommandFlags.FireAndForget);
                continue;
            }

            if (claimed)
            {
                Log.Claimed(_logger, delivery.Id, delivery.Subscription);
            }

            lock (_sending)
            {
                _sending[delivery.QueueId!] = delivery;
            }

            return delivery;
        }

        return null;
    }

    /// <summary>Moves queued deliveries into the stream, in order, each once; waits out a Redis outage (the outbox is bounded).</summary>
    private async Task WriteAsync()
    {
        try
        {
            await foreach (var delivery in _outbox.Reader.ReadAllAsync(_stop.Token).ConfigureAwait(false))
            {
                while (!_stop.IsCancellationRequested)
                {
                    try
                    {
                        // The marker and the entry are written together, so a failed write is retried whole.
                        await _redis.Database.ScriptEvaluateAsync(EnqueueScript, [_seenPrefix + delivery.Id, _stream],
                            [JsonSerializer.Serialize(delivery, WebhooksJsonContext.Default.WebhookDelivery), _options.QueueCapacity]).ConfigureAwait(false);
                        Interlocked.Add(ref _outboxBytes, -delivery.Body.Length);
                        break;
                    }
                    catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
                    {
                        Log.Unavailable(_logger, ex.Message);
                        await Task.Delay(TimeSpan.FromSeconds(1), _time, _stop.Token).ConfigureAwait(false);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Tells Redis this node is still sending what it took (claims them again to itself), so no other node takes them.</summary>
    private async Task RenewAsync()
    {
        RedisValue[] ids;
        lock (_sending)
        {
            ids = [.. _sending.Keys.Select(k => (RedisValue)k)];
        }

        if (ids.Length == 0)
        {
            return;
        }

        try
        {
            await _redis.Database.StreamClaimIdsOnlyAsync(_stream, Group, _redis.NodeId, 0, ids).ConfigureAwait(false);
        }
        catch (Exception ex) when (RedisSessionStore.IsRedisFailure(ex))
        {
            Log.Unavailable(_logger, ex.Message);
        }
    }

    private async Task EnsureGroupAsync()
    {
        if (_grouped)
        {
            return;
        }

        try
        {
            await _redis.Database.StreamCreateConsumerGroupAsync(_stream, Group, "0-0", createStream: true).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("BUSYGROUP", StringComparison.Ordinal))
        {
            // Another node made it.
        }

        _grouped = true;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 8301, Level = LogLevel.Warning, Message = "Webhook queue: Redis is unreachable ({Reason}); deliveries wait")]
        public static partial void Unavailable(ILogger logger, string reason);

        [LoggerMessage(EventId = 8302, Level = LogLevel.Information, Message = "Webhook {Id} for {Subscription} taken over from a node that stopped")]
        public static partial void Claimed(ILogger logger, string id, string subscription);
    }
}
