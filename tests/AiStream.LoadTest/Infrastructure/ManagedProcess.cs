using System.Diagnostics;
using System.Text;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>A child process whose stdout and stderr are kept (for error messages) and which is killed on dispose.</summary>
internal class ManagedProcess : IAsyncDisposable
{
    private readonly StringBuilder _output = new();
    private readonly Lock _outputLock = new();
    private bool _released;

    protected ManagedProcess(Process process)
    {
        Process = process;
        ChildProcesses.Track(process);
        process.OutputDataReceived += (_, e) => Capture(e.Data);
        process.ErrorDataReceived += (_, e) => Capture(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    protected Process Process { get; }

    /// <summary>A scratch folder of the process (configuration, pid file, logs), deleted when it is disposed.</summary>
    protected string? ScratchFolder { get; init; }

    public int ProcessId => Process.Id;

    public bool HasExited => _released || Process.HasExited;

    /// <summary>Everything the process wrote so far (the last 64 KB).</summary>
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

    protected static Process StartRedirected(ProcessStartInfo info)
    {
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        return Process.Start(info) ?? throw new InvalidOperationException(info.FileName + " did not start");
    }

    private void Capture(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_outputLock)
        {
            _output.AppendLine(line);
            if (_output.Length > 64 * 1024)
            {
                _output.Remove(0, _output.Length - (48 * 1024));
            }
        }
    }

    public async Task StopAsync()
    {
        if (HasExited)
        {
            return;
        }

        await ChildProcesses.TerminateAsync(Process);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await Process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            ChildProcesses.KillQuietly(Process);
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
