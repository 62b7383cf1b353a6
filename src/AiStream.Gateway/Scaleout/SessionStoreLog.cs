namespace AiStream.Gateway.Scaleout;

/// <summary>Log messages of the Redis session store and its parts (logged under <see cref="RedisSessionStore"/>'s category).</summary>
internal static partial class SessionStoreLog
{
    [LoggerMessage(EventId = 8101, Level = LogLevel.Warning, Message = "Redis unreachable ({Reason}); buffering events of session {SessionId} and delivering them locally")]
    public static partial void Buffering(ILogger logger, string sessionId, string reason);

    [LoggerMessage(EventId = 8102, Level = LogLevel.Information, Message = "Wrote {Count} buffered events of session {SessionId} to Redis from position {First}")]
    public static partial void Flushed(ILogger logger, string sessionId, int count, long first);

    [LoggerMessage(EventId = 8103, Level = LogLevel.Warning, Message = "Session {SessionId} reset ({Reason}): local head {LocalHead}, shared head {SharedHead}; watchers get a gap notice and a snapshot")]
    public static partial void Reset(ILogger logger, string sessionId, string reason, long localHead, long sharedHead);

    [LoggerMessage(EventId = 8104, Level = LogLevel.Warning, Message = "Run {RunId} of session {SessionId} was ended: its node {Owner} is gone")]
    public static partial void OrphanEnded(ILogger logger, string sessionId, string runId, string owner);

    [LoggerMessage(EventId = 8105, Level = LogLevel.Error, Message = "Could not deliver an event of session {SessionId}")]
    public static partial void DeliveryFailed(ILogger logger, string sessionId, Exception exception);

    [LoggerMessage(EventId = 8106, Level = LogLevel.Warning, Message = "Maintenance of session {SessionId} failed")]
    public static partial void MaintenanceFailed(ILogger logger, string sessionId, Exception exception);

    [LoggerMessage(EventId = 8108, Level = LogLevel.Warning, Message = "Redis came back without session {SessionId}; restored its position ({Head}) and a checkpoint from this node")]
    public static partial void Repaired(ILogger logger, string sessionId, long head);

    [LoggerMessage(EventId = 8107, Level = LogLevel.Debug, Message = "Session {SessionId} is no longer needed on this node")]
    public static partial void MirrorForgotten(ILogger logger, string sessionId);
}
