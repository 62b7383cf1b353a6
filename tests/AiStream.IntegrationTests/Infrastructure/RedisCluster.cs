using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>
/// A real three-master Redis Cluster (no replicas) on free loopback ports, each node a <see cref="RedisServer"/> in
/// its own folder, joined with <c>redis-cli --cluster create</c> (Debian package redis-tools).
/// </summary>
internal sealed class RedisCluster : IAsyncDisposable
{
    private const int NodeCount = 3;
    private static readonly TimeSpan CreateTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(20);

    private readonly List<RedisServer> _nodes;

    private RedisCluster(List<RedisServer> nodes) => _nodes = nodes;

    /// <summary>The nodes, in the order their ports are listed; each can be stopped, restarted or killed.</summary>
    public IReadOnlyList<RedisServer> Nodes => _nodes;

    public IReadOnlyList<int> Ports => _nodes.Select(n => n.Port).ToList();

    /// <summary><c>127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3</c>.</summary>
    public string ConnectionString => string.Join(',', _nodes.Select(n => n.ConnectionString));

    public static async Task<RedisCluster> StartAsync()
    {
        var cluster = new RedisCluster([]);
        try
        {
            for (var i = 0; i < NodeCount; i++)
            {
                cluster._nodes.Add(await RedisServer.StartAsync(persistent: false, cluster: true));
            }

            await cluster.CreateAsync();
            await cluster.WaitUntilOkAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Sends one command to the node on <paramref name="port"/>; returns the raw RESP reply (a <c>-MOVED</c> included).</summary>
    public Task<string> CommandAsync(int port, params string[] args) =>
        _nodes.Any(n => n.Port == port)
            ? Resp.CommandAsync(port, args)
            : throw new ArgumentOutOfRangeException(nameof(port), port, "Not a port of this cluster: " + ConnectionString);

    private async Task CreateAsync()
    {
        var info = new ProcessStartInfo("redis-cli")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.ArgumentList.Add("--cluster");
        info.ArgumentList.Add("create");
        foreach (var node in _nodes)
        {
            info.ArgumentList.Add(node.ConnectionString);
        }

        foreach (var arg in new[] { "--cluster-replicas", "0", "--cluster-yes" })
        {
            info.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(info) ?? throw new InvalidOperationException("redis-cli did not start");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException("redis-cli was not found on PATH; install the Debian package redis-tools (test.sh does).", e);
        }

        using (process)
        {
            ChildProcesses.Track(process);
            var output = new StringBuilder();
            var outputLock = new Lock();
            void Capture(string? line)
            {
                if (line is not null)
                {
                    lock (outputLock)
                    {
                        output.AppendLine(line);
                    }
                }
            }

            process.OutputDataReceived += (_, e) => Capture(e.Data);
            process.ErrorDataReceived += (_, e) => Capture(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            using var timeout = new CancellationTokenSource(CreateTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                ChildProcesses.KillQuietly(process);
                await process.WaitForExitAsync();
            }
            finally
            {
                ChildProcesses.Untrack(process);
            }

            if (timeout.IsCancellationRequested || process.ExitCode != 0)
            {
                string text;
                lock (outputLock)
                {
                    text = output.ToString();
                }

                throw new InvalidOperationException("redis-cli --cluster create failed" + (timeout.IsCancellationRequested ? " (timed out)" : string.Create(CultureInfo.InvariantCulture, $" with code {process.ExitCode}"))
                    + ":\n" + text + string.Concat(_nodes.Select(n => $"\n--- node {n.Port} ---\n" + n.LogTail(15))));
            }
        }
    }

    private async Task WaitUntilOkAsync()
    {
        var deadline = DateTime.UtcNow + ReadyTimeout;
        var last = new string[_nodes.Count];
        while (true)
        {
            for (var i = 0; i < _nodes.Count; i++)
            {
                last[i] = await _nodes[i].CommandAsync("CLUSTER", "INFO");
            }

            if (last.All(info => info.Contains("cluster_state:ok", StringComparison.Ordinal)))
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"The cluster was not ok on every node within {ReadyTimeout.TotalSeconds} s:\n"
                    + string.Concat(_nodes.Select((n, i) => $"\n--- node {n.Port} ---\n{last[i]}\n{n.LogTail(15)}")));
            }

            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }
    }
}
