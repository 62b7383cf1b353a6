namespace AiStream.Gateway.Sessions;

/// <summary>The run manager's log messages.</summary>
internal sealed partial class RunManager
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 4101, Level = LogLevel.Information, Message = "Run {RunId} in session {SessionId} ended: {Outcome}")]
        public static partial void RunEnded(ILogger logger, string sessionId, string runId, string outcome);

        [LoggerMessage(EventId = 4102, Level = LogLevel.Warning, Message = "Run {RunId} in session {SessionId} failed")]
        public static partial void RunFailed(ILogger logger, string sessionId, string runId, Exception exception);

        [LoggerMessage(EventId = 4104, Level = LogLevel.Warning, Message = "Run {RunId} in session {SessionId}: model {Model} failed before its first token ({Code}); trying the next")]
        public static partial void RunFallingBack(ILogger logger, string sessionId, string runId, string model, string code);

        [LoggerMessage(EventId = 4103, Level = LogLevel.Information, Message = "Run {RunId} in session {SessionId} cancelled: nobody watched for {Seconds} s")]
        public static partial void IdleCancel(ILogger logger, string sessionId, string runId, double seconds);

        [LoggerMessage(EventId = 4105, Level = LogLevel.Warning, Message = "Run {RunId} in session {SessionId} stopped: {Reason}")]
        public static partial void RunFenced(ILogger logger, string sessionId, string runId, string reason);

        [LoggerMessage(EventId = 4106, Level = LogLevel.Information, Message = "Run {RunId} in session {SessionId} ended at a limit: {Code}")]
        public static partial void RunLimited(ILogger logger, string sessionId, string runId, string code);

        [LoggerMessage(EventId = 4107, Level = LogLevel.Warning, Message = "Run {RunId} in session {SessionId}: tool {Tool} failed; the model sees that it failed")]
        public static partial void ToolFailed(ILogger logger, string sessionId, string runId, string tool, Exception exception);

        [LoggerMessage(EventId = 4108, Level = LogLevel.Debug, Message = "Run {RunId} in session {SessionId}: tool {Tool} refused its input: {Reason}")]
        public static partial void ToolRefused(ILogger logger, string sessionId, string runId, string tool, string reason);
    }
}
