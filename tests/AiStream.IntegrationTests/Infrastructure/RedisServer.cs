using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>
/// A real <c>redis-server</c> (from apt) on a free loopback port in its own temp folder, which tests can stop, restart
/// on the same port, or kill. Non-persistent by default; <c>persistent: true</c> turns on an always-fsynced
/// append-only file, so a restart (graceful or after <see cref="Kill"/>) keeps every acknowledged write.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private const string Binary = "redis-server";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    private readonly bool _persistent;
    private readonly bool _cluster;
    private readonly Lock _logLock = new();
    private Process? _process;
    private int _launches;

    private RedisServer(string directory, bool persistent, bool cluster)
    {
        DirectoryPath = directory;
        LogPath = Path.Combine(directory, "redis.log");
        _persistent = persistent;
        _cluster = cluster;
    }

    public int Port { get; private set; }

    /// <summary>The cluster bus port, when started as a cluster node.</summary>
    public int? ClusterBusPort { get; private set; }

    /// <summary><c>127.0.0.1:PORT</c>, as the gateway's Redis setting takes it.</summary>
    public string ConnectionString => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port}");

    /// <summary>The server's own folder: its data files, <c>nodes.conf</c> and <see cref="LogPath"/>.</summary>
    public string DirectoryPath { get; }

    /// <summary>Everything the server wrote to stdout and stderr, over all its starts.</summary>
    public string LogPath { get; }

    public bool IsRunning => _process is { HasExited: false };

    public int ProcessId => _process?.Id ?? throw new InvalidOperationException("redis-server is not started");

    public static Task<RedisServer> StartAsync(bool persistent = false) => StartAsync(persistent, cluster: false);

    /// <summary>Starts a server; as a cluster node it gets <c>--cluster-enabled yes</c> and a free bus port of its own.</summary>
    internal static async Task<RedisServer> StartAsync(bool persistent, bool cluster)
    {
        var server = new RedisServer(Directory.CreateTempSubdirectory("aistream-redis-").FullName, persistent, cluster);
        try
        {
            // A free port can be taken between picking it and binding it: pick again a few times.
            for (var attempt = 1; ; attempt++)
            {
                server.Port = ChildProcesses.FreePort();
                server.ClusterBusPort = cluster ? FreeBusPort(server.Port) : null;
                if (await server.LaunchAsync())
                {
                    return server;
                }

                if (attempt == 3)
                {
                    throw new InvalidOperationException("redis-server lost the race for a free port three times:\n" + server.LogTail());
                }
            }
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Sends one command and returns the raw RESP reply text, e.g. <c>+OK\r\n</c> or <c>$1\r\nv\r\n</c>.</summary>
    public Task<string> CommandAsync(params string[] args) => Resp.CommandAsync(Port, args);

    /// <summary>Graceful stop (SIGTERM, which Redis treats as SHUTDOWN); waits until the process exited.</summary>
    public async Task StopAsync()
    {
        if (_process is null)
        {
            return;
        }

        if (!_process.HasExited)
        {
            await ChildProcesses.TerminateAsync(_process);
            using var timeout = new CancellationTokenSource(StopTimeout);
            try
            {
                await _process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                ChildProcesses.KillQuietly(_process);
                await _process.WaitForExitAsync();
                throw new TimeoutException($"redis-server did not stop within {StopTimeout.TotalSeconds} s of SIGTERM; killed it:\n" + LogTail());
            }
        }

        ReleaseProcess();
    }

    /// <summary>Starts the server again on the same port, in the same folder (so persisted data is loaded).</summary>
    public async Task StartAgainAsync()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException("redis-server is still running");
        }

        ReleaseProcess();
        if (!await LaunchAsync())
        {
            throw new InvalidOperationException($"Port {Port} was taken while redis-server was down:\n" + LogTail());
        }
    }

    /// <summary>Graceful stop, <paramref name="downtime"/> with nothing listening, then a start on the same port.</summary>
    public async Task RestartAsync(TimeSpan downtime)
    {
        await StopAsync();
        await Task.Delay(downtime);
        await StartAgainAsync();
    }

    /// <summary>SIGKILL: a crash. Returns once the process is gone.</summary>
    public void Kill()
    {
        if (_process is null)
        {
            return;
        }

        ChildProcesses.KillQuietly(_process);
        _process.WaitForExit();
        ReleaseProcess();
    }

    /// <summary>The last lines the server wrote.</summary>
    public string LogTail(int lines = 40)
    {
        lock (_logLock)
        {
            if (!File.Exists(LogPath))
            {
                return "(no log)";
            }

            using var stream = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            var all = reader.ReadToEnd().Split('\n');
            return string.Join('\n', all.TakeLast(lines));
        }
    }

    /// <summary>Starts the process and waits for PONG; false when the port turned out to be taken.</summary>
    private async Task<bool> LaunchAsync()
    {
        _launches++;
        var info = new ProcessStartInfo(Binary)
        {
            WorkingDirectory = DirectoryPath,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in Arguments())
        {
            info.ArgumentList.Add(arg);
        }

        AppendLog(string.Create(CultureInfo.InvariantCulture, $"==== start {_launches}: {Binary} {string.Join(' ', info.ArgumentList.Select(a => a.Length == 0 ? "\"\"" : a))}"));
        var logStart = new FileInfo(LogPath).Length;
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException("redis-server was not found on PATH; install the Debian package redis-server (test.sh does).", e);
        }

        _process = process;
        ChildProcesses.Track(process);
        process.OutputDataReceived += (_, e) => AppendLog(e.Data);
        process.ErrorDataReceived += (_, e) => AppendLog(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow + StartTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                await process.WaitForExitAsync();
                var taken = LogSince(logStart).Contains("Address already in use", StringComparison.Ordinal);
                ReleaseProcess();
                return taken
                    ? false
                    : throw new InvalidOperationException($"redis-server exited with code {process.ExitCode} while starting:\n" + LogTail());
            }

            if (await Resp.PingAsync(Port))
            {
                return true;
            }

            await Task.Delay(25);
        }

        Kill();
        throw new TimeoutException($"redis-server did not answer PING within {StartTimeout.TotalSeconds} s:\n" + LogTail());
    }

    private List<string> Arguments()
    {
        var args = new List<string>
        {
            "--port", Port.ToString(CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--dir", DirectoryPath,
            "--protected-mode", "no",
            "--save", string.Empty,
            "--daemonize", "no",
            "--logfile", string.Empty,
        };
        args.AddRange(_persistent ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]);
        if (_cluster)
        {
            args.AddRange(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", ClusterBusPort!.Value.ToString(CultureInfo.InvariantCulture)]);
        }

        return args;
    }

    private static int FreeBusPort(int port)
    {
        while (true)
        {
            var bus = ChildProcesses.FreePort();
            if (bus != port)
            {
                return bus;
            }
        }
    }

    private void AppendLog(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_logLock)
        {
            try
            {
                File.AppendAllText(LogPath, line + "\n");
            }
            catch (DirectoryNotFoundException)
            {
                // Disposed: the folder is gone.
            }
        }
    }

    private string LogSince(long offset)
    {
        lock (_logLock)
        {
            using var stream = new FileStream(LogPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            stream.Seek(offset, SeekOrigin.Begin);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return reader.ReadToEnd();
        }
    }

    private void ReleaseProcess()
    {
        if (_process is { HasExited: true } process)
        {
            ChildProcesses.Untrack(process);
            process.Dispose();
            _process = null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            ChildProcesses.KillQuietly(_process);
            await _process.WaitForExitAsync();
            ReleaseProcess();
        }

        lock (_logLock)
        {
            try
            {
                Directory.Delete(DirectoryPath, recursive: true);
            }
            catch (IOException)
            {
                // A forked child (AOF rewrite) may still hold a file for a moment; the system cleans temp folders anyway.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }
}
