using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;

namespace AiStream.Gateway.Transports;

/// <summary>
/// Runs socket I/O the way nginx does: the thread that learns a socket is readable runs the code waiting for it, and
/// a response flush sends on the thread that flushed, instead of handing each step to the thread pool. A relayed
/// token is then one receive, one send and no thread switch (with the default thread-pool dispatch it is two
/// hand-offs, and on a small VM the wake-ups cost more CPU than the relay itself; see README, Benchmarks).
/// <para>
/// The trade-off: code that blocks or computes for long inside a socket continuation holds up every other socket of
/// that event thread. Agents, tools and host plugins run in this process, so it is opt-in
/// (<c>AiStream:Transports:EventLoopIo=true</c>) for deployments that run none of them; the default keeps the
/// runtime's thread-pool dispatch (test: a handler blocking a thread for 500 ms does not delay other watchers). An
/// explicit <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> in the environment always wins.
/// </para>
/// </summary>
internal static partial class EventLoopIo
{
    /// <summary>The runtime's switch; read once, when the first socket is created, so it is set before the host starts.</summary>
    private const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static bool Enabled(IConfiguration configuration) =>
        configuration.GetValue($"{TransportsOptions.SectionName}:{nameof(TransportsOptions.EventLoopIo)}", false);

    /// <summary>Sets the socket engine's switch when the configuration asks for it and nobody chose otherwise.</summary>
    public static void ConfigureRuntime(IConfiguration configuration)
    {
        if (Enabled(configuration) && Environment.GetEnvironmentVariable(InlineCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
        }
    }

    /// <summary>Kestrel: the connection pipes' readers and writers run inline (no IOQueue hop before each send).</summary>
    public static void Apply(SocketTransportOptions options, bool enabled) => options.UnsafePreferInlineScheduling = enabled;

    /// <summary>Whether socket continuations run on the event threads in this process.</summary>
    public static bool InlineCompletions => Environment.GetEnvironmentVariable(InlineCompletionsVariable) == "1";

    [LoggerMessage(EventId = 5101, Level = LogLevel.Information,
        Message = "Socket I/O: inline completions {InlineCompletions}, Kestrel inline scheduling {InlineScheduling}")]
    public static partial void LogMode(ILogger logger, bool inlineCompletions, bool inlineScheduling);
}
