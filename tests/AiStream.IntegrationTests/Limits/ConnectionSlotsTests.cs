using AiStream.Gateway.Scaleout;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace AiStream.IntegrationTests.Limits;

/// <summary>The shared connection slots against a real Redis, at the level of one take.</summary>
public sealed class ConnectionSlotsTests
{
    [Fact]
    public async Task ATakeWhoseLeaseARenewalAlreadyWrote_IsNotCountedAgainstItself_AndTheLimitStillHolds()
    {
        await using var server = await RedisServer.StartAsync();
        var scaleout = new ScaleoutOptions { ConnectionString = server.ConnectionString };
        using var redis = new RedisConnection(Options.Create(scaleout), NullLogger<RedisConnection>.Instance);
        var slots = new RedisConnectionSlots(redis, Options.Create(scaleout), TimeProvider.System, NullLogger<RedisConnectionSlots>.Instance);

        // A renewal that runs after a take put its lease in the node's held set, but before the take's script, writes
        // that lease to Redis first. The next take's lease is this node's first.
        await redis.Database.SortedSetAddAsync(redis.Key("conn:user:alice", "slots"), redis.NodeId + ":1",
            DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds());
        using var first = await slots.TryTakeAsync("user:alice", 1, CancellationToken.None);
        Assert.NotNull(first);

        Assert.Null(await slots.TryTakeAsync("user:alice", 1, CancellationToken.None));
        first!.Dispose();
        await Task.Delay(200); // the give-back is fire and forget
        using var again = await slots.TryTakeAsync("user:alice", 1, CancellationToken.None);
        Assert.NotNull(again);
    }
}
