using System.Net;
using System.Net.Sockets;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Scaleout;

/// <summary>The multi-process fixtures do what the scale-out tests rely on: real Redis that restarts and crashes, a real cluster, a real gateway process.</summary>
public sealed class FixtureTests
{
    [Fact]
    public async Task RedisServer_Persistent_GracefulRestartKeepsTheData()
    {
        await using var redis = await RedisServer.StartAsync(persistent: true);
        Assert.Equal("+OK\r\n", await redis.CommandAsync("SET", "kept", "v1"));

        await redis.RestartAsync(TimeSpan.FromMilliseconds(100));

        Assert.Equal("$2\r\nv1\r\n", await redis.CommandAsync("GET", "kept"));
        Assert.Equal("127.0.0.1:" + redis.Port, redis.ConnectionString);
    }

    [Fact]
    public async Task RedisServer_NotPersistent_GracefulRestartLosesTheData()
    {
        await using var redis = await RedisServer.StartAsync();
        Assert.Equal("*2\r\n$4\r\nsave\r\n$0\r\n\r\n", await redis.CommandAsync("CONFIG", "GET", "save"));
        Assert.Equal("+OK\r\n", await redis.CommandAsync("SET", "lost", "v1"));
        var port = redis.Port;

        await redis.RestartAsync(TimeSpan.FromMilliseconds(100));

        Assert.Equal(port, redis.Port);
        Assert.Equal("$-1\r\n", await redis.CommandAsync("GET", "lost"));
    }

    [Fact]
    public async Task RedisServer_KillThenStartAgain_AnswersPingAndKeepsFsyncedWrites()
    {
        await using var redis = await RedisServer.StartAsync(persistent: true);
        Assert.Equal("+OK\r\n", await redis.CommandAsync("SET", "acked", "v1"));
        var before = redis.ProcessId;

        redis.Kill();
        Assert.False(redis.IsRunning);
        await Assert.ThrowsAnyAsync<SocketException>(() => redis.CommandAsync("PING"));

        await redis.StartAgainAsync();

        Assert.NotEqual(before, redis.ProcessId);
        Assert.Equal("+PONG\r\n", await redis.CommandAsync("PING"));
        Assert.Equal("$2\r\nv1\r\n", await redis.CommandAsync("GET", "acked"));
    }

    [Fact]
    public async Task RedisCluster_ThreeMasters_OkAndKeysSpreadOverEveryNode()
    {
        await using var cluster = await RedisCluster.StartAsync();
        Assert.Equal(3, cluster.Ports.Distinct().Count());
        Assert.Equal(string.Join(',', cluster.Ports.Select(p => "127.0.0.1:" + p)), cluster.ConnectionString);
        foreach (var port in cluster.Ports)
        {
            var info = await cluster.CommandAsync(port, "CLUSTER", "INFO");
            Assert.Contains("cluster_state:ok", info, StringComparison.Ordinal);
            Assert.Contains("cluster_known_nodes:3", info, StringComparison.Ordinal);
        }

        // Ask the first node for every key: it takes its own and answers MOVED for the others'.
        var owners = new HashSet<int>();
        foreach (var tag in "abcdefghij")
        {
            var key = "{" + tag + "}:k";
            var reply = await cluster.CommandAsync(cluster.Ports[0], "SET", key, "v");
            var owner = cluster.Ports[0];
            if (reply.StartsWith("-MOVED ", StringComparison.Ordinal))
            {
                owner = int.Parse(reply.TrimEnd()[(reply.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
                Assert.Equal("+OK\r\n", await cluster.CommandAsync(owner, "SET", key, "v"));
            }
            else
            {
                Assert.Equal("+OK\r\n", reply);
            }

            owners.Add(owner);
        }

        Assert.Equal(cluster.Ports.Order(), owners.Order());
    }

    [Fact]
    public async Task GatewayProcess_StartsHealthyAndKillClosesThePort()
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?>());
        using var http = gateway.CreateClient();
        Assert.Equal(gateway.BaseAddress, http.BaseAddress);

        using (var health = await http.GetAsync("healthz"))
        {
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        }

        using (var models = await http.GetAsync("v1/models"))
        {
            Assert.Equal(HttpStatusCode.OK, models.StatusCode);
            Assert.Contains("\"sim\"", await models.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        gateway.Kill();

        Assert.True(gateway.HasExited);
        using var client = new TcpClient();
        var refused = await Assert.ThrowsAnyAsync<SocketException>(() => client.ConnectAsync(IPAddress.Loopback, gateway.Port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Fact]
    public async Task GatewayProcess_StopAsync_ShutsDownGracefully()
    {
        await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?> { ["AiStream:DefaultModel"] = "sim" });

        await gateway.StopAsync();

        Assert.True(gateway.HasExited);
        Assert.DoesNotContain("Unhandled exception", gateway.Output, StringComparison.Ordinal);
    }
}
