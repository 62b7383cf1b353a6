using System.Net;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Infrastructure.Tokens;
using static AiStream.IntegrationTests.Scaleout.ScaleoutKit;

namespace AiStream.IntegrationTests.Security;

/// <summary>Rights hold across nodes: a run started on one node is cancelled from another only by its starter or an admin.</summary>
public sealed class ScaleoutAuthorizationTests
{
    [Fact]
    public async Task RunStartedOnNodeA_IsCancelledFromNodeB_OnlyByItsStarterOrAnAdmin()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = AuthOn(Merge(Sim(tokensPerSecond: 5)));
        var nodes = await StartNodesAsync(redis.ConnectionString, ["A", "B"], settings);
        await using var a = nodes[0];
        await using var b = nodes[1];
        var session = "team-" + Guid.NewGuid().ToString("N")[..8];
        using var aliceOnA = a.Client().WithBearer(Mint("alice", Grants(("team-*", ["write"]))));
        using var aliceOnB = b.Client().WithBearer(Mint("alice", Grants(("team-*", ["write"]))));
        using var erinOnB = b.Client().WithBearer(Mint("erin", Grants(("team-*", ["write"]))));
        using var adminOnB = b.Client().WithBearer(Mint("dave", Grants(("team-*", ["admin"]))));

        var first = await StartRunAsync(aliceOnA, session, "a long story please");
        using (var byErin = await erinOnB.PostAsync($"api/sessions/{session}/runs/{first}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.Forbidden, byErin.StatusCode);
        }

        using (var byAlice = await aliceOnB.PostAsync($"api/sessions/{session}/runs/{first}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, byAlice.StatusCode);
        }

        var second = await StartRunAsync(aliceOnA, session, "another long story");
        using (var byAdmin = await adminOnB.PostAsync($"api/sessions/{session}/runs/{second}/cancel", null))
        {
            Assert.Equal(HttpStatusCode.OK, byAdmin.StatusCode);
        }

        await WaitUntilAsync(async () => ((await InfoAsync(aliceOnA, session))["activeRuns"]!.AsArray()).Count == 0, "both runs to end");
    }
}
