using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>
/// A real nginx (from apt) on a free loopback port, running the repository's <c>deploy/nginx/nginx.conf</c> with only
/// its addresses changed: the upstream server becomes the test gateway (or one server line per gateway node, each
/// keeping the line's parameters such as <c>max_fails</c>) and <c>listen</c> a free port.
/// </summary>
internal sealed partial class NginxProxy : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;

    private NginxProxy(Process process, string directory, Uri baseAddress)
    {
        _process = process;
        _directory = directory;
        BaseAddress = baseAddress;
    }

    public Uri BaseAddress { get; }

    /// <summary>nginx in front of one gateway.</summary>
    public static Task<NginxProxy> StartAsync(Uri gateway) => StartAsync([gateway]);

    /// <summary>
    /// nginx in front of several gateway nodes, one upstream server line each (as compose's <c>gateway</c> name resolving to every
    /// replica). The upstream's <c>hash $remote_addr consistent</c> sends every loopback client to the same node while
    /// it is up; when it is down, requests go to the next one.
    /// </summary>
    public static async Task<NginxProxy> StartAsync(IReadOnlyList<Uri> gateways)
    {
        ArgumentOutOfRangeException.ThrowIfZero(gateways.Count);
        var binary = File.Exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
        var directory = Directory.CreateTempSubdirectory("aistream-nginx-").FullName;
        // Workers run as an unprivileged user when the tests run as root: let them use the temp paths.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(directory, (UnixFileMode)0b111_111_111);
        }
        var port = FreePort();
        var config = await File.ReadAllTextAsync(Path.Combine(Fixtures.RepositoryRoot, "deploy", "nginx", "nginx.conf"));
        var upstreamServers = 0;
        config = UpstreamServer().Replace(config, match =>
        {
            upstreamServers++;
            var indent = match.Groups["indent"].Value;
            var parameters = match.Groups["parameters"].Value;
            return string.Join("\n", gateways.Select(g => $"{indent}server 127.0.0.1:{g.Port}{parameters};"));
        }, 1);
        if (upstreamServers != 1)
        {
            throw new InvalidOperationException("deploy/nginx/nginx.conf has no 'server gateway:8080 ...;' line in its upstream");
        }

        config = Listen().Replace(config, $"listen 127.0.0.1:{port};", 1);
        config = "daemon off;\n" + $"pid {directory}/nginx.pid;\n" + $"error_log {directory}/error.log warn;\n" + config;
        config = config.Replace("http {", $$"""
            http {
                access_log off;
                client_body_temp_path {{directory}}/body;
                proxy_temp_path {{directory}}/proxy;
                fastcgi_temp_path {{directory}}/fastcgi;
                uwsgi_temp_path {{directory}}/uwsgi;
                scgi_temp_path {{directory}}/scgi;
            """, StringComparison.Ordinal);
        var configPath = Path.Combine(directory, "nginx.conf");
        await File.WriteAllTextAsync(configPath, config);

        var process = Process.Start(new ProcessStartInfo(binary, ["-p", directory, "-c", configPath, "-e", Path.Combine(directory, "error.log")])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        }) ?? throw new InvalidOperationException("nginx did not start");
        var proxy = new NginxProxy(process, directory, new Uri($"http://127.0.0.1:{port}/"));
        for (var i = 0; i < 100; i++)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException("nginx exited: " + await process.StandardError.ReadToEndAsync()
                    + File.ReadAllText(Path.Combine(directory, "error.log")));
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port);
                return proxy;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        await proxy.DisposeAsync();
        throw new TimeoutException("nginx did not listen within 5 s");
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // nginx's workers may still hold a file for a moment; the temp folder is cleaned by the system anyway.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    [GeneratedRegex(@"^(?<indent>[ \t]*)server\s+gateway:8080(?<parameters>(?:\s+[^;\s]+)*)\s*;", RegexOptions.Multiline)]
    private static partial Regex UpstreamServer();

    [GeneratedRegex(@"listen\s+80;")]
    private static partial Regex Listen();
}
