using System.Diagnostics.Tracing;
using Microsoft.Diagnostics.NETCore.Client;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// Makes a .NET process run a full blocking garbage collection from outside, through its diagnostics port: an
/// EventPipe session with the runtime's GCHeapCollect keyword induces one (what dotnet-gcdump does before it walks
/// the heap). The gateway needs no endpoint for it.
/// </summary>
internal static class FullGc
{
    private const long GcHeapCollectKeyword = 0x800000;

    /// <summary>Induces a full GC in <paramref name="pid"/> and waits a moment for it; false when the process has no diagnostics port.</summary>
    public static async Task<bool> CollectAsync(int pid, CancellationToken cancellationToken)
    {
        try
        {
            var client = new DiagnosticsClient(pid);
            var providers = new[] { new EventPipeProvider("Microsoft-Windows-DotNETRuntime", EventLevel.Informational, GcHeapCollectKeyword) };
            using var session = await client.StartEventPipeSessionAsync(providers, requestRundown: false, circularBufferMB: 16, cancellationToken);
            // Drain the session's stream so the runtime never blocks on it, for as long as the collection takes.
            var drain = session.EventStream.CopyToAsync(Stream.Null, cancellationToken);
            await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken);
            await session.StopAsync(cancellationToken);
            await drain.WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is ServerNotAvailableException or UnsupportedCommandException or TimeoutException or IOException or ServerErrorException)
        {
            return false;
        }
    }
}
