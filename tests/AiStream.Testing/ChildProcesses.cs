using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace AiStream.Testing;

/// <summary>
/// What the process fixtures share (the gateway, redis-server, nginx, in the tests and in the load tool): free loopback
/// ports, finding an executable, SIGTERM, and a last-resort kill of every child still running when the host process
/// exits, so a fixture a test forgot to dispose (or a run that was interrupted) does not outlive it.
/// </summary>
public static class ChildProcesses
{
    private static readonly ConcurrentDictionary<int, Process> Running = new();

    static ChildProcesses()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var process in Running.Values)
            {
                KillQuietly(process);
            }
        };
    }

    /// <summary>A loopback port nobody listens on right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The first of <paramref name="names"/> found on PATH (or /usr/sbin, /usr/bin), else null.</summary>
    public static string? FindExecutable(params string[] names)
    {
        var path = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"]);
        foreach (var name in names)
        {
            foreach (var folder in path)
            {
                var candidate = Path.Combine(folder, name);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    /// <summary>Remembers a started child so it is killed if the host process exits while it still runs.</summary>
    public static void Track(Process process) => Running[process.Id] = process;

    public static void Untrack(Process process) => Running.TryRemove(process.Id, out _);

    /// <summary>Asks a process to stop gracefully (SIGTERM), through the shell's builtin <c>kill</c>.</summary>
    public static async Task TerminateAsync(Process process)
    {
        using var kill = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "kill -TERM " + process.Id.ToString(CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("/bin/sh did not start");
        await kill.WaitForExitAsync();
    }

    /// <summary>SIGKILL to the process and its children; nothing happens when it already exited.</summary>
    public static void KillQuietly(Process process)
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // It exited between the check and the kill.
        }
    }
}
