namespace AiStream.Gateway.Completions;

/// <summary>The proxy's log messages.</summary>
internal sealed partial class CompletionProxy
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Attempt on model {Model} (provider {Provider}) failed with {Code}: {Reason}")]
        public static partial void AttemptFailed(ILogger logger, string model, string provider, string code, string reason);

        [LoggerMessage(EventId = 2002, Level = LogLevel.Warning, Message = "Model {Requested}: {Failed} failed with {Code}, falling back to {Next}")]
        public static partial void FallingBack(ILogger logger, string requested, string failed, string next, string code);

        [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Upstream for model {Model} failed mid-stream with {Code}: {Reason}; the client got an error event")]
        public static partial void MidStreamFailure(ILogger logger, string model, string code, string reason);

        [LoggerMessage(EventId = 2004, Level = LogLevel.Information, Message = "Client left before the first token of model {Model}; upstream cancelled")]
        public static partial void ClientLeftBeforeFirstToken(ILogger logger, string model);

        [LoggerMessage(EventId = 2005, Level = LogLevel.Information, Message = "Client left mid-stream on model {Model}; upstream cancelled")]
        public static partial void ClientLeftMidStream(ILogger logger, string model);

        [LoggerMessage(EventId = 2007, Level = LogLevel.Error, Message = "Relaying model {Model} failed inside the gateway")]
        public static partial void RelayFailed(ILogger logger, string model, Exception exception);

        [LoggerMessage(EventId = 2006, Level = LogLevel.Debug, Message = "Usage on model {Model} (provider {Provider}): {PromptTokens} prompt, {CompletionTokens} completion tokens, estimated: {Estimated}")]
        public static partial void Usage(ILogger logger, string model, string provider, long promptTokens, long completionTokens, bool estimated);
    }
}
