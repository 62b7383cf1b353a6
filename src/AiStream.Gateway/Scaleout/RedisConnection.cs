using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// The node's one Redis connection (StackExchange.Redis multiplexes every command and subscription over it) and the
/// names of every key. Every key of a session carries the session id as its hash tag, so each script touches one
/// Redis Cluster slot, and the session's channel is a sharded channel in that same slot.
/// </summary>
internal sealed partial class RedisConnection : IDisposable
{
    private readonly string _prefix;

    public RedisConnection(IOptions<ScaleoutOptions> options, ILogger<RedisConnection> logger)
    {
        var o = options.Value;
        _prefix = o.KeyPrefix;
        // A process incarnation goes with the configured name: a node restarted under the same name (a pod name) is a
        // new owner, so the runs its previous process left behind are ended instead of looking alive.
        NodeId = o.NodeId + "." + Guid.NewGuid().ToString("N")[..8];
        var config = ConfigurationOptions.Parse(o.ConnectionString!);
        // Start and keep running while Redis is away: the gateway serves local watchers and reconnects by itself.
        config.AbortOnConnectFail = false;
        config.ConnectTimeout = o.TimeoutMilliseconds;
        config.SyncTimeout = o.TimeoutMilliseconds;
        config.AsyncTimeout = o.TimeoutMilliseconds;
        config.ReconnectRetryPolicy = new LinearRetry(500);
        // No plain pub/sub channel for configuration broadcasts: on a Redis Cluster plain PUBLISH reaches every node.
        config.ConfigurationChannel = string.Empty;
        config.ClientName ??= "aistream-" + NodeId;
        Multiplexer = ConnectionMultiplexer.Connect(config);
        Multiplexer.ConnectionFailed += (_, e) => Log.ConnectionFailed(logger, e.EndPoint, e.FailureType, e.Exception);
        Multiplexer.ConnectionRestored += (_, e) =>
        {
            Log.ConnectionRestored(logger, e.EndPoint);
            Restored?.Invoke();
        };
    }

    public ConnectionMultiplexer Multiplexer { get; }

    public IDatabase Database => Multiplexer.GetDatabase();

    public ISubscriber Subscriber => Multiplexer.GetSubscriber();

    /// <summary>The configured node name plus this process's incarnation: what Redis knows this process by.</summary>
    public string NodeId { get; }

    /// <summary>Raised when a lost connection to Redis is back.</summary>
    public event Action? Restored;

    public RedisKey Key(string sessionId, string name) => $"{_prefix}{{{sessionId}}}:{name}";

    public RedisChannel Channel(string sessionId) => RedisChannel.Sharded($"{_prefix}{{{sessionId}}}:ch");

    /// <summary>A node's control channel (run cancels), sharded like everything else.</summary>
    public RedisChannel ControlChannel(string nodeId) => RedisChannel.Sharded($"{_prefix}{{node:{nodeId}}}:ctl");

    /// <summary>Live nodes: node id scored by the time its liveness lapses.</summary>
    public RedisKey Nodes => _prefix + "nodes";

    /// <summary>Sessions with presence to sweep, scored by when the next connection expires or leave is due.</summary>
    public RedisKey PresenceDue => _prefix + "presence:due";

    public void Dispose() => Multiplexer.Dispose();

    private static partial class Log
    {
        [LoggerMessage(EventId = 8001, Level = LogLevel.Warning, Message = "Redis connection to {Endpoint} failed ({FailureType}); serving local watchers and buffering until it is back")]
        public static partial void ConnectionFailed(ILogger logger, System.Net.EndPoint? endpoint, ConnectionFailureType failureType, Exception? exception);

        [LoggerMessage(EventId = 8002, Level = LogLevel.Information, Message = "Redis connection to {Endpoint} restored")]
        public static partial void ConnectionRestored(ILogger logger, System.Net.EndPoint? endpoint);
    }
}
