using System.Diagnostics;
using System.Text;

namespace AiStream.Testing;

/// <summary>
/// A child process whose stdout and stderr are kept (for error messages), which is tracked by
/// <see cref="ChildProcesses"/> and killed on dispose. The base of <see cref="GatewayProcess"/> and of the load tool's
/// redis-server and nginx.
/// </summary>
public abstract class ManagedProcess : IAsyncDisposable
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _errors = new();
    private readonly Lock _outputLock = new();
    private readonly int? _outputLimit;
    private bool _released;

    /// <param name="process">A started process with redirected stdout and stderr (<see cref="StartRedirected"/>).</param>
    /// <param name="outputLimit">
    /// Characters of output kept (the latest, trimmed to three quarters when exceeded), for processes that run long;
    /// null keeps everything (tests look for lines anywhere in it).
    /// </param>
    protected ManagedProcess(Process process, int? outputLimit = null)
    {
        Process = process;
        _outputLimit = outputLimit;
        ChildProcesses.Track(process);
        process.OutputDataReceived += (_, e) => Capture(e.Data);
        process.ErrorDataReceived += (_, e) => Capture(e.Data, error: true);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    protected Process Process { get; }

    /// <summary>How messages name the process ("redis-server", "The gateway").</summary>
    protected virtual string Description => Path.GetFileName(Process.StartInfo.FileName);

    /// <summary>A scratch folder of the process (configuration, pid file, logs), deleted when it is disposed.</summary>
    protected string? ScratchFolder { get; init; }

    public int ProcessId => Process.Id;

    public bool HasExited => _released || Process.HasExited;

    /// <summary>Everything the process wrote to stdout and stderr so far (within the output limit).</summary>
    public string Output
    {
        get
        {
            lock (_outputLock)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>What the process wrote to stderr so far (within the output limit).</summary>
    public string Errors
    {
        get
        {
            lock (_outputLock)
            {
                return _errors.ToString();
            }
        }
    }

    protected static Process StartRedirected(ProcessStartInfo info)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        return Process.Start(info) ?? throw new InvalidOperationException(info.FileName + " did not start");
    }

    /// <summary>A crash: SIGKILL to the process tree. Returns once the process is gone.</summary>
    public void Kill()
    {
        if (_released)
        {
            return;
        }

        ChildProcesses.KillQuietly(Process);
        Process.WaitForExit();
    }

    /// <summary>Graceful shutdown (SIGTERM, as an orchestrator sends); kills the process if it is not gone within 10 s.</summary>
    public async Task StopAsync()
    {
        if (HasExited)
        {
            return;
        }

        await ChildProcesses.TerminateAsync(Process);
        using var timeout = new CancellationTokenSource(StopTimeout);
        try
        {
            await Process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException($"{Description} did not stop within {StopTimeout.TotalSeconds} s of SIGTERM; killed it:\n" + Output);
        }
    }

    private void Capture(string? line, bool error = false)
    {
        if (line is null)
        {
            return;
        }

        lock (_outputLock)
        {
            Append(_output, line);
            if (error)
            {
                Append(_errors, line);
            }
        }
    }

    private void Append(StringBuilder text, string line)
    {
        text.AppendLine(line);
        if (_outputLimit is { } limit && text.Length > limit)
        {
            text.Remove(0, text.Length - (limit * 3 / 4));
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_released)
        {
            return;
        }

        ChildProcesses.KillQuietly(Process);
        await Process.WaitForExitAsync();
        ChildProcesses.Untrack(Process);
        _released = true;
        Process.Dispose();
        if (ScratchFolder is not null && Directory.Exists(ScratchFolder))
        {
            try
            {
                Directory.Delete(ScratchFolder, recursive: true);
            }
            catch (IOException)
            {
                // nginx workers may still be closing their log files; a leftover temporary folder is harmless.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        GC.SuppressFinalize(this);
    }
}
