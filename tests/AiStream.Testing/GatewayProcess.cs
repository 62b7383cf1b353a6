using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace AiStream.Testing;

/// <summary>
/// The real built gateway as a separate OS process (<c>dotnet AiStream.Gateway.dll</c>, the configuration the caller
/// was built with) on a free loopback port: for tests that need several nodes, a crash or a graceful shutdown, and for
/// the load tool, which also starts its floor (<c>tests/AiStream.LoadTest.Floor</c>) with it. Settings are
/// configuration keys (<c>AiStream:Redis</c>) passed as environment variables (<c>AiStream__Redis</c>); nothing else
/// configures AiStream.
/// </summary>
public sealed class GatewayProcess : ManagedProcess
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Output kept of a gateway the load tool runs for minutes: the last 64 KB.</summary>
    private const int LongRunOutputLimit = 64 * 1024;

    private static readonly Lazy<string> Built = new(() => BuildOutput.Locate(Path.Combine("src", "AiStream.Gateway"), "AiStream.Gateway.dll"));

    private GatewayProcess(Process process, int port, int? outputLimit)
        : base(process, outputLimit)
    {
        Port = port;
        BaseAddress = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}/"));
    }

    public int Port { get; }

    public Uri BaseAddress { get; }

    protected override string Description => "The gateway";

    /// <summary>
    /// Starts the built gateway and waits until <c>/healthz</c> answers 200. Pass <paramref name="port"/> to start a node
    /// again on the port of one that stopped; without it a free port is picked (and picked again if another process
    /// took it). A null setting removes that variable.
    /// </summary>
    public static Task<GatewayProcess> StartAsync(IDictionary<string, string?> settings, int? port = null, string? workingDirectory = null) =>
        StartAsync(Built.Value, settings, port, workingDirectory, "healthz", outputLimit: null);

    /// <summary>
    /// Starts <paramref name="assembly"/> (a gateway from <see cref="Locate"/>, or the load tool's floor) on a free port
    /// and waits until <c>/readyz</c> answers 200 (with <paramref name="waitUntilReady"/> false: <c>/healthz</c>).
    /// Readiness also waits for the tokenizer vocabulary, which loads in the background right after start (and Redis,
    /// with scale-out), so that work is not charged to a first measurement. Keeps the last 64 KB of output.
    /// </summary>
    public static Task<GatewayProcess> StartAsync(string assembly, IReadOnlyDictionary<string, string> settings, bool waitUntilReady = true) =>
        StartAsync(assembly, settings.ToDictionary(s => s.Key, string? (s) => s.Value), null, null, waitUntilReady ? "readyz" : "healthz", LongRunOutputLimit);

    /// <summary>
    /// <paramref name="explicitPath"/> when given (the load tool's <c>--gateway-dll</c>), else
    /// <c>src/AiStream.Gateway/bin/{Configuration}/net10.0/AiStream.Gateway.dll</c> of this repository, with the
    /// configuration the caller was built with.
    /// </summary>
    public static string Locate(string? explicitPath = null)
    {
        if (!string.IsNullOrEmpty(explicitPath))
        {
            return File.Exists(explicitPath) ? Path.GetFullPath(explicitPath) : throw new FileNotFoundException("No gateway assembly at " + explicitPath, explicitPath);
        }

        return Built.Value;
    }

    /// <summary>
    /// Starts a gateway that is expected not to start; waits for it to exit and returns its exit code, its output
    /// (stdout and stderr) and its standard error.
    /// </summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunUntilExitAsync(IDictionary<string, string?> settings, int port)
    {
        var gateway = Launch(Built.Value, settings, port, null, outputLimit: null);
        using var timeout = new CancellationTokenSource(StartTimeout);
        try
        {
            await gateway.Process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            gateway.Kill();
            throw new TimeoutException("The gateway did not exit:\n" + gateway.Output);
        }

        await gateway.Process.WaitForExitAsync(); // the redirected streams are read to their end
        return (gateway.Process.ExitCode, gateway.Output, gateway.Errors.Trim());
    }

    /// <summary>An HttpClient on <see cref="BaseAddress"/> with no timeout (streams may last as long as a test wants).</summary>
    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = Timeout.InfiniteTimeSpan };

    private static async Task<GatewayProcess> StartAsync(string assembly, IDictionary<string, string?> settings, int? port, string? workingDirectory, string healthPath, int? outputLimit)
    {
        for (var attempt = 1; ; attempt++)
        {
            var gateway = Launch(assembly, settings, port ?? ChildProcesses.FreePort(), workingDirectory, outputLimit);
            try
            {
                await gateway.WaitUntilHealthyAsync(healthPath);
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

    private static GatewayProcess Launch(string assembly, IDictionary<string, string?> settings, int port, string? workingDirectory, int? outputLimit)
    {
        var info = new ProcessStartInfo(BuildOutput.DotnetHost()) { WorkingDirectory = workingDirectory ?? Path.GetDirectoryName(assembly)! };
        info.ArgumentList.Add(assembly);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}"));

        // Only the settings given here configure AiStream: drop any the host process inherited.
        foreach (var key in info.Environment.Keys
            .Where(k => k.StartsWith("AiStream__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase))
            .ToList())
        {
            info.Environment.Remove(key);
        }

        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment.Remove("ASPNETCORE_URLS");
        // A test process keeps the runtime's default socket dispatch (tests/Shared/SocketEngineMode.cs); the child
        // chooses its own (AiStream:Transports:EventLoopIo).
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        // "Now listening on:" proves the process that answers the health check is this one (see WaitUntilHealthyAsync).
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

        return new GatewayProcess(StartRedirected(info), port, outputLimit);
    }

    private async Task WaitUntilHealthyAsync(string path)
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
        var listening = string.Create(CultureInfo.InvariantCulture, $"Now listening on: http://127.0.0.1:{Port}");
        var deadline = DateTime.UtcNow + StartTimeout;
        var last = "no answer";
        while (DateTime.UtcNow < deadline)
        {
            if (Process.HasExited)
            {
                await Process.WaitForExitAsync();
                throw new InvalidOperationException($"{Path.GetFileName(Process.StartInfo.ArgumentList[0])} exited with code {Process.ExitCode} while starting:\n" + Output);
            }

            try
            {
                using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
                // Only once this process said it listens on the port: gateways are started in parallel, and a port
                // picked as free can be taken by another one first, which would answer the health check for it.
                if (response.StatusCode == HttpStatusCode.OK && Output.Contains(listening, StringComparison.Ordinal))
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
        throw new TimeoutException($"The gateway's /{path} was not 200 within {StartTimeout.TotalSeconds} s ({last}):\n" + Output);
    }
}
