using System.Globalization;
using AiStream.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace AiStream.IntegrationTests.Scaleout;

/// <summary>A three-master Redis Cluster with two gateway nodes on it, shared by <see cref="ClusterTests"/> (the cluster takes seconds to form).</summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    /// <summary>
    /// Runs last about a second and a stalled node is not taken for dead (<see cref="NodeDeathTests.Steady"/>), and
    /// nodes forget a session a second after its last watcher left, so a test can see the unsubscribe.
    /// </summary>
    private static readonly Dictionary<string, string?> Extra = new(NodeDeathTests.Steady) { ["AiStream:Scaleout:MirrorIdleSeconds"] = "1" };

    internal RedisCluster Cluster { get; private set; } = null!;

    internal GatewayProcess A { get; private set; } = null!;

    internal GatewayProcess B { get; private set; } = null!;

    internal static Dictionary<string, string?> Settings(IDictionary<string, string?>? more = null)
    {
        var settings = new Dictionary<string, string?>(Extra);
        foreach (var (key, value) in more ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        return settings;
    }

    public async Task InitializeAsync()
    {
        Cluster = await RedisCluster.StartAsync();
        var nodes = await ScaleoutKit.StartNodesAsync(Cluster.ConnectionString, ["A", "B"], Settings());
        (A, B) = (nodes[0], nodes[1]);
    }

    public async Task DisposeAsync()
    {
        if (A is not null)
        {
            await A.DisposeAsync();
        }

        if (B is not null)
        {
            await B.DisposeAsync();
        }

        if (Cluster is not null)
        {
            await Cluster.DisposeAsync();
        }
    }

    /// <summary>The hash slot of a session's keys and channel, as the cluster computes it (<c>CLUSTER KEYSLOT</c>).</summary>
    internal async Task<int> SlotAsync(string sessionId)
    {
        var reply = RespReply.Parse(await Cluster.CommandAsync(Cluster.Ports[0], "CLUSTER", "KEYSLOT", $"aistream:{{{sessionId}}}:seq"));
        return (int)(long)reply!;
    }

    /// <summary>The port of the master serving <paramref name="slot"/>, read from <c>CLUSTER NODES</c>.</summary>
    internal async Task<int> MasterOfSlotAsync(int slot)
    {
        var nodes = (string)RespReply.Parse(await Cluster.CommandAsync(Cluster.Ports[0], "CLUSTER", "NODES"))!;
        foreach (var line in nodes.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link> <slot or range>...
            var fields = line.Split(' ');
            if (!fields[2].Split(',').Contains("master"))
            {
                continue;
            }

            var address = fields[1].Split('@')[0];
            var port = int.Parse(address[(address.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture);
            foreach (var range in fields.Skip(8).Where(f => !f.StartsWith('[')))
            {
                var bounds = range.Split('-');
                var low = int.Parse(bounds[0], CultureInfo.InvariantCulture);
                var high = bounds.Length > 1 ? int.Parse(bounds[1], CultureInfo.InvariantCulture) : low;
                if (slot >= low && slot <= high)
                {
                    return port;
                }
            }
        }

        throw new InvalidOperationException($"No master serves slot {slot}:\n{nodes}");
    }

    internal async Task<int> OwnerAsync(string sessionId) => await MasterOfSlotAsync(await SlotAsync(sessionId));
}

/// <summary>
/// The scale-out on a real three-master Redis Cluster: each session's keys and sharded channel live on the master owning
/// its hash tag, nodes see each other's runs whatever master holds the session, and a node's death is survived.
/// </summary>
public sealed class ClusterTests(ClusterFixture fixture, ITestOutputHelper output) : IClassFixture<ClusterFixture>
{
    /// <summary>StackExchange.Redis's default <c>ConfigurationOptions.ConfigurationChannel</c>.</summary>
    private const string StackExchangeConfigurationChannel = "__Booksleeve_MasterChanged";

    [Fact]
    public async Task RunOnB_WatchedOnAAndB_SessionsOnEveryMaster_SamePositionsAndBytes()
    {
        // Two sessions per master, found by asking the cluster where each id's slot lives.
        var byOwner = new Dictionary<int, List<string>>();
        var candidates = 0;
        while (byOwner.Count < 3 || byOwner.Values.Any(s => s.Count < 2))
        {
            Assert.True(++candidates < 200, "200 random session ids did not cover the three masters");
            var session = ScaleoutKit.NewSessionId();
            var owner = await fixture.OwnerAsync(session);
            var list = byOwner.TryGetValue(owner, out var l) ? l : byOwner[owner] = [];
            if (list.Count < 2)
            {
                list.Add(session);
            }
        }

        Assert.Equal(fixture.Cluster.Ports.Order(), byOwner.Keys.Order());
        using var toA = fixture.A.Client();
        using var toB = fixture.B.Client();
        await Task.WhenAll(byOwner.SelectMany(o => o.Value.Select(s => CrossNodeRunAsync(toA, toB, s, o.Key))));
    }

    private async Task CrossNodeRunAsync(HttpClient toA, HttpClient toB, string session, int owner)
    {
        using var onA = await ScaleoutKit.WatchAsync(toA, session, clientId: "a", name: "A");
        using var onB = await ScaleoutKit.WatchAsync(toB, session, clientId: "b", name: "B");
        var runId = await ScaleoutKit.StartRunAsync(toB, session, "Explain cluster slots");
        var endB = await onB.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(20));
        var endA = await onA.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(20));

        var label = $"session {session} on master {owner}";
        Assert.Equal("RUN_FINISHED", endB.Type);
        Assert.Equal(endB.Seq, endA.Seq);
        ScaleoutKit.AssertNoGapNoDuplicate(onA.Events.TakeWhile(e => e.Seq <= endA.Seq), label: label + " on A");
        ScaleoutKit.AssertNoGapNoDuplicate(onB.Events.TakeWhile(e => e.Seq <= endB.Seq), label: label + " on B");
        // From where both watched on, the same events at the same positions, byte for byte, presence included.
        var from = Math.Max(onA.SnapshotHead ?? 0, onB.SnapshotHead ?? 0);
        var seenOnA = onA.LiveEvents().Where(e => e.Seq > from && e.Seq <= endA.Seq).Select(e => (e.Seq, e.Json)).ToList();
        var seenOnB = onB.LiveEvents().Where(e => e.Seq > from && e.Seq <= endB.Seq).Select(e => (e.Seq, e.Json)).ToList();
        Assert.Equal(seenOnB, seenOnA);
        Assert.Contains(seenOnA, e => e.Json.Contains("\"RUN_STARTED\"", StringComparison.Ordinal));
        var text = ScaleoutKit.RunText(onA.Events, runId);
        Assert.True(text.Length > 0 && text == ScaleoutKit.RunText(onB.Events, runId), label);

        // The session's log is on the master that owns its slot (and answers MOVED elsewhere).
        Assert.Equal(":1\r\n", await fixture.Cluster.CommandAsync(owner, "EXISTS", $"aistream:{{{session}}}:log"));
        foreach (var other in fixture.Cluster.Ports.Where(p => p != owner))
        {
            Assert.StartsWith("-MOVED ", await fixture.Cluster.CommandAsync(other, "EXISTS", $"aistream:{{{session}}}:log"), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task WatchedNodeKilledMidRun_OnTheCluster_WatcherResumesOnTheRunningNode()
    {
        const int Repetitions = 5;
        var failures = await NodeDeathDrill.RepeatAsync(Repetitions, fixture.B,
            n => ScaleoutKit.StartNodeAsync(fixture.Cluster.ConnectionString, "doomed" + n.ToString(CultureInfo.InvariantCulture),
                ClusterFixture.Settings()),
            (doomed, survivor, rep, random) => NodeDeathDrill.ResumeAfterKillAsync(doomed, survivor, runOnDoomed: false, random, reconnectAfterEnd: false),
            output);

        Assert.True(failures.Count == 0, $"{failures.Count} of {Repetitions} repetitions failed:\n\n" + string.Join("\n\n", failures));
    }

    [Fact]
    public async Task SessionWatchedOnAOnly_IsOneShardedSubscriptionOnItsMaster_AndNothingUsesPlainPubSub()
    {
        var session = ScaleoutKit.NewSessionId();
        var channel = $"aistream:{{{session}}}:ch";
        var owner = await fixture.OwnerAsync(session);
        var others = fixture.Cluster.Ports.Where(p => p != owner).ToList();
        using var toA = fixture.A.Client();

        using (var onA = await ScaleoutKit.WatchAsync(toA, session, clientId: "a", name: "A"))
        {
            await onA.WaitForAsync(e => e.Name == "presence.join", "the watcher's own join");
            Assert.Equal(1, await ShardSubscribersAsync(owner, channel));
            foreach (var port in others)
            {
                Assert.Equal(0, await ShardSubscribersAsync(port, channel));
                Assert.DoesNotContain(channel, await ListAsync(port, "PUBSUB", "SHARDCHANNELS"));
            }

            Assert.Contains(channel, await ListAsync(owner, "PUBSUB", "SHARDCHANNELS"));

            // While a run streams: still one subscriber (the watching node also runs it), and no plain channel anywhere.
            var runId = await ScaleoutKit.StartRunAsync(toA, session, "Explain sharded channels");
            await onA.WaitForCountAsync(e => e.Type == "TEXT_MESSAGE_CONTENT", 3, "the run's first words");
            Assert.Equal(1, await ShardSubscribersAsync(owner, channel));
            foreach (var port in fixture.Cluster.Ports)
            {
                // StackExchange.Redis itself subscribes (plainly) to its configuration-change channel on one node,
                // unless ConfigurationChannel is set to "": that one is not the gateway's and carries no session event.
                var plain = await ListAsync(port, "PUBSUB", "CHANNELS");
                output.WriteLine($"PUBSUB CHANNELS on {port}: [{string.Join(", ", plain)}]");
                Assert.All(plain, c => Assert.Equal(StackExchangeConfigurationChannel, c));
                var stats = (string)RespReply.Parse(await fixture.Cluster.CommandAsync(port, "INFO", "commandstats"))!;
                Assert.DoesNotContain("cmdstat_publish:", stats, StringComparison.Ordinal);
            }

            var end = await onA.WaitForRunEndAsync(runId, TimeSpan.FromSeconds(15));
            Assert.Equal("RUN_FINISHED", end.Type);
            var ownerStats = (string)RespReply.Parse(await fixture.Cluster.CommandAsync(owner, "INFO", "commandstats"))!;
            Assert.Contains("cmdstat_spublish:", ownerStats, StringComparison.Ordinal);
            Assert.Contains("cmdstat_ssubscribe:", ownerStats, StringComparison.Ordinal);
        }

        // Nobody watches any more: the node forgets the session (MirrorIdleSeconds 1) and leaves its channel.
        var left = System.Diagnostics.Stopwatch.StartNew();
        await ScaleoutKit.WaitUntilAsync(async () => await ShardSubscribersAsync(owner, channel) == 0, "A to unsubscribe from " + channel, TimeSpan.FromSeconds(15));
        output.WriteLine($"A unsubscribed {left.ElapsedMilliseconds} ms after the last watcher left");
    }

    private async Task<long> ShardSubscribersAsync(int port, string channel)
    {
        // PUBSUB SHARDNUMSUB answers [channel, count] for the node it is sent to.
        var reply = (List<object?>)RespReply.Parse(await fixture.Cluster.CommandAsync(port, "PUBSUB", "SHARDNUMSUB", channel))!;
        Assert.Equal(channel, reply[0]);
        return (long)reply[1]!;
    }

    private async Task<List<string>> ListAsync(int port, params string[] command) =>
        ((List<object?>)RespReply.Parse(await fixture.Cluster.CommandAsync(port, command))!).Cast<string>().ToList();
}

/// <summary>Parses a raw RESP2 reply as <see cref="Resp"/> returns it: simple and bulk strings, integers, nulls and nested arrays.</summary>
internal static class RespReply
{
    public static object? Parse(string raw)
    {
        var position = 0;
        var value = Read(raw, ref position);
        return position == raw.Length ? value : throw new FormatException("Trailing data after the reply: " + raw);
    }

    private static object? Read(string raw, ref int position)
    {
        var end = raw.IndexOf("\r\n", position, StringComparison.Ordinal);
        var line = raw[(position + 1)..end];
        var kind = raw[position];
        position = end + 2;
        switch (kind)
        {
            case '+':
                return line;
            case '-':
                throw new InvalidOperationException("Redis answered an error: " + line);
            case ':':
                return long.Parse(line, CultureInfo.InvariantCulture);
            case '$':
                var length = int.Parse(line, CultureInfo.InvariantCulture);
                if (length < 0)
                {
                    return null;
                }

                // Lengths are bytes; the replies read here are ASCII except bulk texts that we only compare whole.
                var text = raw.Substring(position, length);
                position += length + 2;
                return text;
            case '*':
                var count = int.Parse(line, CultureInfo.InvariantCulture);
                if (count < 0)
                {
                    return null;
                }

                var items = new List<object?>(count);
                for (var i = 0; i < count; i++)
                {
                    items.Add(Read(raw, ref position));
                }

                return items;
            default:
                throw new FormatException("Unexpected RESP type: " + raw[position..]);
        }
    }
}
