using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Presence.PresenceApi;

namespace AiStream.IntegrationTests.Presence;

/// <summary>Who a client is until authentication exists: <c>clientId</c>, <c>name</c> and <c>color</c>, or an anonymous id.</summary>
public sealed class IdentityTests
{
    [Theory]
    [InlineData("a b", null, null)]
    [InlineData("a/b", null, null)]
    [InlineData("ann", "0123456789012345678901234567890123456789012345678901234567890123456789", null)]
    [InlineData("ann", "Ann", "012345678901234567890123456789012")]
    public async Task Watch_InvalidIdentity_Returns400InvalidIdentity(string clientId, string? name, string? color)
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        var session = NewSessionId();

        using var response = await http.GetAsync(SessionWatcher.Url(session, clientId, name, color), HttpCompletionOption.ResponseHeadersRead);
        var problem = await response.Content.ReadFromJsonAsync<JsonObject>();

        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("invalid_identity", Str(problem!["error"]!["code"]));
        Assert.Equal(0, (await GetPresenceAsync(http, session))["total"]!.GetValue<int>());
    }

    [Fact]
    public async Task Watch_ClientIdOf200Characters_Returns400()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();

        using var tooLong = await http.GetAsync(SessionWatcher.Url(NewSessionId(), new string('a', 200)), HttpCompletionOption.ResponseHeadersRead);
        using var longest = await PresenceApi.WatchAsync(http, NewSessionId(), new string('a', 128));

        Assert.Equal(400, (int)tooLong.StatusCode);
        Assert.Equal(new string('a', 128), longest.ClientId);
    }

    [Fact]
    public async Task Watch_Anonymous_GetsAnAnonIdAndIsPresentUnderIt()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");

        using var anonymous = await PresenceApi.WatchAsync(http, session, clientId: null);
        using var otherBrowser = gateway.Client(); // its own cookie jar: another anonymous person
        using var another = await PresenceApi.WatchAsync(otherBrowser, session, clientId: null);
        var join = await observer.WaitForAsync(e => e.Is("presence.join", anonymous.ClientId), "the anonymous watcher's join");

        Assert.Matches("^anon-[0-9a-f]{12}$", anonymous.ClientId);
        Assert.NotEqual(anonymous.ClientId, another.ClientId);
        Assert.Equal(anonymous.ClientId, Str(join.Value!["name"])); // no name given: the id stands in
        Assert.Equal("user", Str(join.Value["kind"]));
        var listed = Member(await GetPresenceAsync(http, session), anonymous.ClientId);
        Assert.NotNull(listed);
        Assert.Equal(1, listed["connections"]!.GetValue<int>());
        // The id it was given is how it writes its state.
        await SetStateAsync(http, session, anonymous.ClientId, new JsonObject { ["typing"] = true });
    }

    [Fact]
    public async Task Watch_AnonymousReconnect_KeepsItsIdThroughTheCookieSoNoLeaveJoinPair()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        var session = NewSessionId();
        using var observer = await PresenceApi.WatchAsync(http, session, "obs");

        string first;
        using (var anonymous = await PresenceApi.WatchAsync(http, session, clientId: null))
        {
            first = anonymous.ClientId;
            await observer.WaitForAsync(e => e.Is("presence.join", first), "the anonymous join");
        }

        // What EventSource does on its own: the same URL again, with the browser's cookies.
        using var again = await PresenceApi.WatchAsync(http, session, clientId: null);

        Assert.Equal(first, again.ClientId);
        var member = Member(await GetPresenceAsync(http, session), first);
        Assert.NotNull(member);
        Assert.Equal(2, (await GetPresenceAsync(http, session))["total"]!.GetValue<int>());
    }

    [Fact]
    public async Task Watch_NamedClient_EchoesItsIdInTheHeader()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();

        using var watch = await PresenceApi.WatchAsync(http, NewSessionId(), "u1@example.com", "Ann");

        Assert.Equal("u1@example.com", watch.ClientId);
    }

    [Fact]
    public async Task HubConnect_InvalidClientId_IsRefused()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();

        await using var connection = new HubConnectionBuilder().WithUrl(new Uri(http.BaseAddress!, "hubs/sessions?clientId=a%20b")).Build();
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connection.Closed += _ =>
        {
            closed.TrySetResult();
            return Task.CompletedTask;
        };

        // The handshake may finish before OnConnectedAsync refuses the identity: then the connection closes right after.
        try
        {
            await connection.StartAsync();
            await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is not TimeoutException)
        {
            // Refused during the start.
        }

        Assert.Equal(HubConnectionState.Disconnected, connection.State);
    }

    [Fact]
    public async Task GetPresence_BadLimitOrSessionId_Returns400()
    {
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();

        using var zero = await http.GetAsync($"api/sessions/{NewSessionId()}/presence?limit=0");
        using var unknown = await http.GetAsync($"api/sessions/{NewSessionId()}/presence");

        Assert.Equal(400, (int)zero.StatusCode);
        Assert.Equal("application/problem+json", zero.Content.Headers.ContentType!.MediaType);
        var empty = (await unknown.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.Equal(200, (int)unknown.StatusCode);
        Assert.Equal(0, empty["total"]!.GetValue<int>());
        Assert.Empty(empty["members"]!.AsArray());
    }
}
