namespace AiStream.Gateway.Transports;

/// <summary>
/// Raises the thread pool's minimum worker count at start. Agents, tools and host plugins run in this process, and one
/// of them blocking a thread is enough to stall every socket on a small machine: the pool starts with one worker per
/// core and adds more only slowly once they are all busy. Measured on 2 cores: a handler blocking a thread for 500 ms
/// delayed other watchers' events by up to 980 ms with the default minimum (2), and by under 10 ms with 4 (test:
/// <c>PipelineTests.AHandlerBlockingAThreadFor500Ms_DoesNotDelayOtherWatchers</c>). Threads are still created only on
/// demand; the minimum only removes the injection delay up to it.
/// </summary>
internal static partial class ThreadPoolFloor
{
    /// <summary>The minimum applied when <c>AiStream:Transports:MinWorkerThreads</c> is 0: four per core, at least 8.</summary>
    public static int Automatic => Math.Max(8, Environment.ProcessorCount * 4);

    /// <summary>Raises (never lowers) the pool's minimum worker threads to <paramref name="configured"/> (0: automatic).</summary>
    public static void Apply(ILogger logger, int configured)
    {
        var wanted = configured == 0 ? Automatic : configured;
        ThreadPool.GetMinThreads(out var workers, out var io);
        if (workers < wanted && ThreadPool.SetMinThreads(wanted, io))
        {
            workers = wanted;
        }

        LogMinimum(logger, workers);
    }

    [LoggerMessage(EventId = 5102, Level = LogLevel.Information, Message = "Thread pool: at least {Workers} worker threads")]
    private static partial void LogMinimum(ILogger logger, int workers);
}
