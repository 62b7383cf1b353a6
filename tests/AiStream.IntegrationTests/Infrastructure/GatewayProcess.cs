using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>
/// The real built gateway as a separate OS process (<c>dotnet AiStream.Gateway.dll</c>, the configuration the tests
/// were built with) on a free loopback port, for tests that need several nodes, a crash or a graceful shutdown.
/// Settings are configuration keys (<c>AiStream:Redis</c>) passed as environment variables (<c>AiStream__Redis</c>).
/// </summary>
internal sealed class GatewayProcess : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);
    private static readonly Lazy<string> Assembly = new(LocateAssembly);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _errors = new();
    private readonly Lock _outputLock = new();
    private bool _released;

    private GatewayProcess(Process process, int port)
    {
        _process = process;
        Port = port;
        BaseAddress = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}/"));
    }

    public int Port { get; }

    public Uri BaseAddress { get; }

    public int ProcessId => _process.Id;

    public bool HasExited => _released || _process.HasExited;

    /// <summary>Everything the process wrote to stdout and stderr so far.</summary>
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

    /// <summary>
    /// Starts a gateway and waits until <c>/healthz</c> answers 200. Pass <paramref name="port"/> to start a node again on
    /// the port of one that stopped; without it a free port is picked (and picked again if another process took it).
    /// </summary>
    public static async Task<GatewayProcess> StartAsync(IDictionary<string, string?> settings, int? port = null, string? workingDirectory = null)
    {
        for (var attempt = 1; ; attempt++)
        {
            var gateway = Launch(settings, port ?? ChildProcesses.FreePort(), workingDirectory);
            try
            {
                await gateway.WaitUntilHealthyAsync();
                return gateway;
            }
            catch (InvalidOperationException) when (port is null && attempt < 3
                && gateway.Output.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                await gateway.DisposeAsync();
            }
            catch
            {
                await gateway.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>An HttpClient on <see cref="BaseAddress"/> with no timeout (streams may last as long as a test wants).</summary>
    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = Timeout.InfiniteTimeSpan };

    /// <summary>A crash: SIGKILL to the process tree. Returns once the process is gone.</summary>
    public void Kill()
    {
        if (_released)
        {
            return;
        }

        ChildProcesses.KillQuietly(_process);
        _process.WaitForExit();
    }

    /// <summary>Graceful shutdown (SIGTERM, as an orchestrator sends); kills the process if it is not gone within 10 s.</summary>
    public async Task StopAsync()
    {
        if (HasExited)
        {
            return;
        }

        await ChildProcesses.TerminateAsync(_process);
        using var timeout = new CancellationTokenSource(StopTimeout);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException($"The gateway did not stop within {StopTimeout.TotalSeconds} s of SIGTERM; killed it:\n" + Output);
        }
    }

    /// <summary>
    /// Starts a gateway that is expected not to start; waits for it to exit and returns its exit code, standard output
    /// and standard error.
    /// </summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunUntilExitAsync(IDictionary<string, string?> settings, int port)
    {
        var gateway = Launch(settings, port, null);
        using var timeout = new CancellationTokenSource(StartTimeout);
        try
        {
            await gateway._process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            gateway.Kill();
            throw new TimeoutException("The gateway did not exit:\n" + gateway.Output);
        }

        await gateway._process.WaitForExitAsync(); // the redirected streams are read to their end
        lock (gateway._outputLock)
        {
            return (gateway._process.ExitCode, gateway._output.ToString(), gateway._errors.ToString().Trim());
        }
    }

    private static GatewayProcess Launch(IDictionary<string, string?> settings, int port, string? workingDirectory)
    {
        var assembly = Assembly.Value;
        var info = new ProcessStartInfo(DotnetHost())
        {
            WorkingDirectory = workingDirectory ?? Path.GetDirectoryName(assembly)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.ArgumentList.Add(assembly);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}"));

        // Only the settings given here configure AiStream: drop any the test host inherited.
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("AiStream__", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(key);
        }

        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment.Remove("ASPNETCORE_URLS");
        // This test process keeps the runtime's default socket dispatch (SocketEngineMode); the child chooses its own.
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        // "Now listening on:" proves the process that answers /healthz is this one (see WaitUntilHealthyAsync).
        info.Environment["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Information";
        foreach (var (key, value) in settings)
        {
            var name = key.Replace(":", "__", StringComparison.Ordinal);
            if (value is null)
            {
                info.Environment.Remove(name);
            }
            else
            {
                info.Environment[name] = value;
            }
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start");
        ChildProcesses.Track(process);
        var gateway = new GatewayProcess(process, port);
        process.OutputDataReceived += (_, e) => gateway.Capture(e.Data);
        process.ErrorDataReceived += (_, e) => gateway.Capture(e.Data, error: true);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return gateway;
    }

    private async Task WaitUntilHealthyAsync()
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + StartTimeout;
        var last = "no answer";
        while (DateTime.UtcNow < deadline)
        {
            if (_process.HasExited)
            {
                await _process.WaitForExitAsync();
                throw new InvalidOperationException($"The gateway exited with code {_process.ExitCode} while starting:\n" + Output);
            }

            try
            {
                using var response = await http.GetAsync("healthz");
                // Only once this process said it listens on the port: tests start gateways in parallel, and a port
                // picked as free can be taken by another test's gateway first, which would answer /healthz for it.
                if (response.StatusCode == HttpStatusCode.OK
                    && Output.Contains(string.Create(CultureInfo.InvariantCulture, $"Now listening on: http://127.0.0.1:{Port}"), StringComparison.Ordinal))
                {
                    return;
                }

                last = "status " + (int)response.StatusCode;
            }
            catch (HttpRequestException e)
            {
                last = e.Message;
            }
            catch (TaskCanceledException)
            {
                last = "request timed out";
            }

            await Task.Delay(50);
        }

        Kill();
        throw new TimeoutException($"The gateway's /healthz was not 200 within {StartTimeout.TotalSeconds} s ({last}):\n" + Output);
    }

    private void Capture(string? line, bool error = false)
    {
        if (line is null)
        {
            return;
        }

        lock (_outputLock)
        {
            _output.AppendLine(line);
            if (error)
            {
                _errors.AppendLine(line);
            }
        }
    }

    /// <summary>The dotnet host running the tests (the CLI sets DOTNET_HOST_PATH), else the one on PATH.</summary>
    private static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        var current = Environment.ProcessPath;
        return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }

    /// <summary>
    /// <c>src/AiStream.Gateway/bin/{Configuration}/net10.0/AiStream.Gateway.dll</c>, where the configuration is the one
    /// in the test assembly's own path (<c>.../bin/Release/net10.0/</c>).
    /// </summary>
    private static string LocateAssembly()
    {
        var segments = AppContext.BaseDirectory.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var bin = Array.LastIndexOf(segments, "bin");
        if (bin < 0 || bin + 2 >= segments.Length)
        {
            throw new InvalidOperationException("Cannot tell the build configuration from the test path " + AppContext.BaseDirectory);
        }

        var configuration = segments[bin + 1];
        var framework = segments[bin + 2];
        var path = Path.Combine(Fixtures.RepositoryRoot, "src", "AiStream.Gateway", "bin", configuration, framework, "AiStream.Gateway.dll");
        return File.Exists(path)
            ? path
            : throw new FileNotFoundException($"The gateway is not built for {configuration}: {path} is missing. Build the solution first.", path);
    }

    public async ValueTask DisposeAsync()
    {
        if (_released)
        {
            return;
        }

        ChildProcesses.KillQuietly(_process);
        await _process.WaitForExitAsync();
        ChildProcesses.Untrack(_process);
        _released = true;
        _process.Dispose();
    }
}
