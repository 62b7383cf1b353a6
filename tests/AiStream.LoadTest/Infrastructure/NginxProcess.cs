using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// A real nginx (Debian's <c>nginx</c> package) in the foreground with a configuration written to a temporary
/// prefix: the reference the gateway's figures are compared with. Absent nginx is a skip, never an install.
/// </summary>
internal sealed class NginxProcess : ManagedProcess
{
    private static readonly string[] NchanModulePaths =
    [
        "/usr/lib/nginx/modules/ngx_nchan_module.so",
        "/usr/share/nginx/modules/ngx_nchan_module.so",
    ];

    private readonly string _prefix;

    private NginxProcess(Process process, int port, string prefix)
        : base(process)
    {
        _prefix = prefix;
        ScratchFolder = prefix;
        BaseAddress = new Uri(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}/"));
    }

    public Uri BaseAddress { get; }

    /// <summary>The nginx binary, or null with the reason in <paramref name="why"/>.</summary>
    public static string? Find(out string why)
    {
        var nginx = ChildProcesses.FindExecutable("nginx");
        why = nginx is null ? "nginx is not installed (apt-get install nginx); its figures are skipped" : string.Empty;
        return nginx;
    }

    /// <summary>The Nchan module, or null with the reason in <paramref name="why"/>.</summary>
    public static string? FindNchan(out string why)
    {
        if (Find(out why) is null)
        {
            why = "nginx is not installed (apt-get install nginx libnginx-mod-nchan); Nchan figures are skipped";
            return null;
        }

        var module = NchanModulePaths.FirstOrDefault(File.Exists);
        why = module is null ? "the Nchan module is not installed (apt-get install libnginx-mod-nchan); Nchan figures are skipped" : string.Empty;
        return module;
    }

    /// <summary>
    /// A pass-through reverse proxy to <paramref name="upstream"/> (host:port) with response buffering off, so chunks
    /// are relayed as they arrive, and keep-alive upstream connections, as a production nginx in front of a model
    /// server would be set up.
    /// </summary>
    public static Task<NginxProcess> StartProxyAsync(string upstream) => StartAsync(port => $$"""
        http {
          access_log off;
          upstream mock { server {{upstream}}; keepalive 1024; }
          server {
            listen 127.0.0.1:{{port}};
            location / {
              proxy_pass http://mock;
              proxy_http_version 1.1;
              proxy_set_header Connection "";
              proxy_buffering off;
              proxy_request_buffering off;
              proxy_read_timeout 300s;
            }
          }
        }
        """, modulePath: null);

    /// <summary>
    /// Nchan with an HTTP publisher at <c>/pub/{channel}</c> and EventSource subscribers at <c>/sub/{channel}</c>: the
    /// C fan-out reference for the <c>fanout</c> scenario.
    /// </summary>
    public static Task<NginxProcess> StartNchanAsync(string modulePath) => StartAsync(port => $$"""
        http {
          access_log off;
          server {
            listen 127.0.0.1:{{port}};
            location ~ ^/pub/(\w+)$ {
              nchan_publisher;
              nchan_channel_id $1;
              nchan_message_buffer_length 100000;
              nchan_message_timeout 10m;
            }
            location ~ ^/sub/(\w+)$ {
              nchan_subscriber eventsource;
              nchan_channel_id $1;
              nchan_subscriber_first_message newest;
            }
          }
        }
        """, modulePath);

    private static async Task<NginxProcess> StartAsync(Func<int, string> http, string? modulePath)
    {
        var nginx = Find(out var why) ?? throw new InvalidOperationException(why);
        var prefix = Directory.CreateTempSubdirectory("aistream-loadtest-nginx-").FullName;
        var port = ChildProcesses.FreePort();
        var user = Environment.UserName == "root" ? "user root;\n" : string.Empty;
        var load = modulePath is null ? string.Empty : $"load_module {modulePath};\n";
        var config = $$"""
            {{load}}{{user}}worker_processes auto;
            worker_rlimit_nofile 65536;
            daemon off;
            pid {{prefix}}/nginx.pid;
            error_log {{prefix}}/error.log warn;
            events { worker_connections 32768; }
            """ + "\n" + http(port).Replace("http {", $"http {{\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;", StringComparison.Ordinal);
        var file = Path.Combine(prefix, "nginx.conf");
        await File.WriteAllTextAsync(file, config);
        var info = new ProcessStartInfo(nginx) { WorkingDirectory = prefix };
        info.ArgumentList.Add("-p");
        info.ArgumentList.Add(prefix);
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(file);
        var process = new NginxProcess(StartRedirected(info), port, prefix);
        try
        {
            await WaitForPortAsync(process, port);
            return process;
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    private static async Task WaitForPortAsync(ManagedProcess process, int port)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException("nginx exited while starting:\n" + process.Output);
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }

        throw new TimeoutException("nginx did not listen within 10 s:\n" + process.Output);
    }

    public string ErrorLog => File.Exists(Path.Combine(_prefix, "error.log")) ? File.ReadAllText(Path.Combine(_prefix, "error.log")) : string.Empty;
}
