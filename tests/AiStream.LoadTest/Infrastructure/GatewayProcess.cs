using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// The built gateway (<c>dotnet AiStream.Gateway.dll</c>) as a child process on a free loopback port, configured only
/// by the settings given (configuration keys such as <c>AiStream:Providers:mock:Type</c>, passed as environment
/// variables <c>AiStream__Providers__mock__Type</c>). The same approach as the integration tests' GatewayProcess,
/// copied rather than referenced so the tool does not depend on a test project. The floor of <c>connections</c> is
/// started by it too (<see cref="LocateFloor"/>).
/// </summary>
internal sealed class GatewayProcess : ManagedProcess
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    private GatewayProcess(Process process, int port)
        : base(process)
    {
        BaseAddress = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}/"));
    }

    public Uri BaseAddress { get; }

    /// <summary>Starts a gateway and waits until <c>/readyz</c> (smoke runs: <c>/healthz</c>) answers 200 (a free port is picked again if one was taken).</summary>
    public static async Task<GatewayProcess> StartAsync(string assembly, IReadOnlyDictionary<string, string> settings, bool waitUntilReady = true)
    {
        for (var attempt = 1; ; attempt++)
        {
            var gateway = Launch(assembly, settings, ChildProcesses.FreePort());
            try
            {
                await gateway.WaitUntilHealthyAsync(waitUntilReady ? "readyz" : "healthz");
                return gateway;
            }
            catch (InvalidOperationException) when (attempt < 3 && gateway.Output.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
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

    /// <summary>
    /// <c>--gateway-dll</c> when given, else <c>src/AiStream.Gateway/bin/{Configuration}/net10.0/AiStream.Gateway.dll</c>
    /// of the repository this tool was built in, with the configuration the tool itself was built with.
    /// </summary>
    public static string Locate(string? explicitPath)
    {
        if (!string.IsNullOrEmpty(explicitPath))
        {
            return File.Exists(explicitPath) ? Path.GetFullPath(explicitPath) : throw new FileNotFoundException("No gateway assembly at " + explicitPath, explicitPath);
        }

        return LocateBuilt(Path.Combine("src", "AiStream.Gateway"), "AiStream.Gateway.dll");
    }

    /// <summary>
    /// The floor of <c>connections</c> (<c>tests/AiStream.LoadTest.Floor</c>), at its own build output with the
    /// configuration the tool was built with. It is started like the gateway: same launcher, environment and
    /// <c>--urls</c>, and it answers <c>/healthz</c> and <c>/readyz</c>.
    /// </summary>
    public static string LocateFloor() => LocateBuilt(Path.Combine("tests", "AiStream.LoadTest.Floor"), "AiStream.LoadTest.Floor.dll");

    private static string LocateBuilt(string project, string assembly)
    {
        var segments = AppContext.BaseDirectory.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var bin = Array.LastIndexOf(segments, "bin");
        var configuration = bin >= 0 && bin + 1 < segments.Length ? segments[bin + 1] : "Release";
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "AiStream.sln")))
            {
                var path = Path.Combine(folder.FullName, project, "bin", configuration, "net10.0", assembly);
                return File.Exists(path)
                    ? path
                    : throw new FileNotFoundException($"{assembly} is not built for {configuration}: {path} is missing. Build the solution first.", path);
            }
        }

        throw new FileNotFoundException("Cannot find AiStream.sln above " + AppContext.BaseDirectory + "; pass --gateway-dll.");
    }

    private static GatewayProcess Launch(string assembly, IReadOnlyDictionary<string, string> settings, int port)
    {
        var info = new ProcessStartInfo(DotnetHost()) { WorkingDirectory = Path.GetDirectoryName(assembly)! };
        info.ArgumentList.Add(assembly);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}"));
        foreach (var key in info.Environment.Keys
            .Where(k => k.StartsWith("AiStream__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase))
            .ToList())
        {
            info.Environment.Remove(key);
        }

        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment.Remove("ASPNETCORE_URLS");
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        }

        return new GatewayProcess(StartRedirected(info), port);
    }

    private async Task WaitUntilHealthyAsync(string path)
    {
        using var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
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
                // /readyz rather than /healthz: it also waits for the tokenizer vocabulary, which loads in the background
                // right after start (and Redis, with scale-out), so that work is not charged to the first measurement.
                using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
                if (response.StatusCode == HttpStatusCode.OK)
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

        throw new TimeoutException($"The gateway's /{path} was not 200 within {StartTimeout.TotalSeconds} s ({last}):\n" + Output);
    }

    /// <summary>The dotnet host running this tool, else the one on PATH.</summary>
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
}
