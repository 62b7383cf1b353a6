using System.Runtime.CompilerServices;

namespace AiStream.TestShared;

/// <summary>
/// Compiled into each test assembly that hosts gateways in-process (linked from tests/Shared).
/// Gateways hosted in this test process run with the runtime's default socket dispatch: the gateway's inline switch
/// (AiStream:Transports:EventLoopIo) is process-wide and would also change these tests' own clients. Gateways started
/// as child processes clear this and run with their default (on).
/// </summary>
internal static class SocketEngineMode
{
    [ModuleInitializer]
    internal static void KeepThreadPoolDispatch()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
        {
            Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "0");
        }
    }
}
