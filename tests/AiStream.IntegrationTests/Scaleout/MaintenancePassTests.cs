using System.Diagnostics;
using System.Globalization;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Scaleout;
using AiStream.Gateway.Sessions;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace AiStream.IntegrationTests.Scaleout;

/// <summary>A maintenance pass is pipelined: the commands of every session go out before any reply is awaited.</summary>
public sealed class MaintenancePassTests
{
    private const int Sessions = 2_000;

    [Fact]
    public async Task MaintainAsync_2000MirroredSessions_IssuesEverySessionsCommandsBeforeAwaitingAny()
    {
        await using var server = await RedisServer.StartAsync();
        // A long command timeout: Redis is frozen for a moment below, and nothing may time out meanwhile.
        var scaleout = new ScaleoutOptions { ConnectionString = server.ConnectionString, TimeoutMilliseconds = 30_000 };
        using var redis = new RedisConnection(Options.Create(scaleout), NullLogger<RedisConnection>.Instance);
        using var store = new RedisSessionStore(redis, Options.Create(new SessionsOptions()), Options.Create(new PresenceOptions()), Options.Create(scaleout),
            TimeProvider.System, NullLogger<RedisSessionStore>.Instance);
        var runs = Enumerable.Range(0, Sessions).Select(i => store.Retain("pass-" + i.ToString(CultureInfo.InvariantCulture))).ToList();
        var live = new HashSet<string>(StringComparer.Ordinal) { redis.NodeId };

        // The first pass loads the retained mirrors; the second, measured, finds every session in step.
        await store.MaintainAsync(live, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(Sessions, store.MirrorCount);

        // Frozen, Redis answers nothing, so whatever the pass issued stays outstanding: the count shows how much of it
        // goes out before it awaits a reply. A session with a run here reads two things (its shared head and the other
        // nodes' watchers); one session after another, or 64 at a time, would leave at most 128 outstanding.
        Task pass;
        long outstanding;
        await SignalAsync(server, "STOP");
        try
        {
            pass = store.MaintainAsync(live, CancellationToken.None);
            outstanding = await OutstandingAsync(redis, atLeast: 2 * Sessions, within: TimeSpan.FromSeconds(10));
        }
        finally
        {
            await SignalAsync(server, "CONT");
        }

        Assert.True(outstanding >= 2 * Sessions, $"a frozen Redis had {outstanding} commands of the pass outstanding; expected every session's two reads ({2 * Sessions})");
        await pass.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(Sessions, store.MirrorCount);
        Assert.Equal(0, redis.Multiplexer.GetCounters().TotalOutstanding);
        runs.ForEach(r => r.Dispose());
    }

    /// <summary>The commands issued and not yet answered, once at least <paramref name="atLeast"/> (or the most seen within <paramref name="within"/>).</summary>
    private static async Task<long> OutstandingAsync(RedisConnection redis, long atLeast, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        long most = 0;
        while (clock.Elapsed < within)
        {
            most = Math.Max(most, redis.Multiplexer.GetCounters().TotalOutstanding);
            if (most >= atLeast)
            {
                break;
            }

            await Task.Delay(20);
        }

        return most;
    }

    /// <summary>SIGSTOP freezes the server (it reads and answers nothing), SIGCONT lets it go on.</summary>
    private static async Task SignalAsync(RedisServer server, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"kill -{signal} {server.ProcessId.ToString(CultureInfo.InvariantCulture)}"])
        {
            UseShellExecute = false,
        })!;
        await kill.WaitForExitAsync();
        Assert.Equal(0, kill.ExitCode);
    }
}
