using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Sessions;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Infrastructure.Tokens;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Security;

/// <summary>A credential's expiry ends live connections; the client reconnects with a fresh token and resumes without a gap.</summary>
public sealed class ExpiryTests
{
    private static JsonObject Rights => Grants(("*", ["read", "write"]));

    [Fact]
    public async Task SseWatch_EndsWithAuthExpiredAtTheTokensExpiry_AndAFreshTokenResumesWithNoGap()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()));
        using var http = gateway.Client();
        using var publisher = gateway.Client().WithBearer(Mint("publisher", Rights));
        var session = NewSessionId();
        var shortLived = Mint("alice", Rights, lifetime: TimeSpan.FromSeconds(3));

        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/sessions/{session}/events?access_token={shortLived}");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        using var reader = new SseReader(await response.Content.ReadAsStreamAsync());
        await PublishAsync(publisher, session, Custom("before", 1));

        long lastId = 0;
        string? expired = null;
        var started = DateTime.UtcNow;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (await reader.NextEventAsync(cts.Token) is { } lines)
        {
            var data = lines.FirstOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal));
            var id = lines.FirstOrDefault(l => l.StartsWith("id: ", StringComparison.Ordinal));
            if (id is not null)
            {
                Assert.Null(expired); // nothing after the expiry notice
                lastId = long.Parse(id["id: ".Length..], CultureInfo.InvariantCulture);
            }
            else if (data is not null)
            {
                expired = data;
            }
        }

        // The stream ended by itself, right after the notice, about when the token expired.
        Assert.NotNull(expired);
        var notice = JsonNode.Parse(expired!["data: ".Length..])!;
        Assert.Equal("CUSTOM", notice["type"]!.GetValue<string>());
        Assert.Equal("auth.expired", notice["name"]!.GetValue<string>());
        Assert.InRange((DateTime.UtcNow - started).TotalSeconds, 1, 10);

        // Events published while the watcher was away arrive on resume, once each, in order.
        var missed = await PublishAsync(publisher, session, Custom("while-away-1", 1), Custom("while-away-2", 2));
        using var fresh = gateway.Client().WithBearer(Mint("alice", Rights));
        using var resumed = await SessionWatcher.OpenAsync(fresh, session, lastEventId: lastId);
        var next = await resumed.ReadUntilAsync(e => e.Str("name") == "while-away-2");
        Assert.Equal(lastId + 1, resumed.Events[0].Id);
        AssertConsecutive(resumed.Events, lastId + 1);
        Assert.Equal(missed, next.Where(e => e.Str("name")?.StartsWith("while-away", StringComparison.Ordinal) == true).Select(e => e.Id));
    }

    [Fact]
    public async Task HubConnection_IsClosedAtTheTokensExpiry_AndAFreshTokenRejoinsFromItsPosition()
    {
        await using var gateway = new GatewayFactory(AuthOn(Sim()));
        using var publisher = gateway.Client().WithBearer(Mint("publisher", Rights));
        var session = NewSessionId();
        var token = Mint("alice", Rights, lifetime: TimeSpan.FromSeconds(3));
        var seqs = new List<long>();
        var closed = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);

        HubConnection Connect() => new HubConnectionBuilder()
            .WithUrl(new Uri(publisher.BaseAddress!, "hubs/sessions"), o =>
            {
                o.Transports = HttpTransportType.WebSockets;
                o.AccessTokenProvider = () => Task.FromResult<string?>(token);
            })
            .Build();

        await using var hub = Connect();
        hub.On<string, JsonElement>("Event", (_, e) =>
        {
            lock (seqs)
            {
                seqs.Add(e.GetProperty("seq").GetInt64());
            }
        });
        hub.Closed += e =>
        {
            closed.TrySetResult(e);
            return Task.CompletedTask;
        };
        await hub.StartAsync();
        await hub.InvokeAsync<JsonObject>("Join", session, (long?)null);
        await PublishAsync(publisher, session, Custom("before", 1));
        await closed.Task.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(HubConnectionState.Disconnected, hub.State);

        long last;
        lock (seqs)
        {
            last = seqs.Max();
        }

        var missed = await PublishAsync(publisher, session, Custom("while-away", 1));
        token = Mint("alice", Rights);
        await using var again = Connect();
        var resumed = new List<long>();
        again.On<string, JsonElement>("Event", (_, e) =>
        {
            lock (resumed)
            {
                resumed.Add(e.GetProperty("seq").GetInt64());
            }
        });
        await again.StartAsync();
        await again.InvokeAsync<JsonObject>("Join", session, last);
        await WaitUntilAsync(() => Task.FromResult(resumed.ToList().Contains(missed[0])), "the missed event on rejoin");
        lock (resumed)
        {
            Assert.Equal(last + 1, resumed[0]);
            Assert.Equal(resumed.Count, resumed.Distinct().Count());
        }
    }
}
