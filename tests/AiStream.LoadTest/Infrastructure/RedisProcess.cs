using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>A throwaway redis-server on a free loopback port with persistence off. Absent redis-server is a skip.</summary>
internal sealed class RedisProcess : ManagedProcess
{
    private RedisProcess(Process process, int port, string folder)
        : base(process)
    {
        Port = port;
        ScratchFolder = folder;
    }

    public int Port { get; }

    public string ConnectionString => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port}");

    public static string? Find(out string why)
    {
        var redis = ChildProcesses.FindExecutable("redis-server");
        why = redis is null ? "redis-server is not installed (apt-get install redis-server); the cluster scenario is skipped" : string.Empty;
        return redis;
    }

    public static async Task<RedisProcess> StartAsync()
    {
        var redis = Find(out var why) ?? throw new InvalidOperationException(why);
        var port = ChildProcesses.FreePort();
        var dir = Directory.CreateTempSubdirectory("aistream-loadtest-redis-").FullName;
        var info = new ProcessStartInfo(redis) { WorkingDirectory = dir };
        foreach (var arg in new[] { "--port", port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", string.Empty, "--appendonly", "no", "--protected-mode", "no", "--dir", dir })
        {
            info.ArgumentList.Add(arg);
        }

        var process = new RedisProcess(StartRedirected(info), port, dir);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
            {
                var output = process.Output;
                await process.DisposeAsync();
                throw new InvalidOperationException("redis-server exited while starting:\n" + output);
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync("127.0.0.1", port);
                var stream = client.GetStream();
                await stream.WriteAsync("PING\r\n"u8.ToArray());
                var buffer = new byte[16];
                var read = await stream.ReadAsync(buffer);
                if (Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal))
                {
                    return process;
                }
            }
            catch (SocketException)
            {
            }
            catch (IOException)
            {
            }

            await Task.Delay(50);
        }

        await process.DisposeAsync();
        throw new TimeoutException("redis-server did not answer PING within 10 s");
    }
}
