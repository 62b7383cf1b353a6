using System.Text.Json.Nodes;

namespace AiStream.Gateway.Presence;

/// <summary>Who a member is. <paramref name="Kind"/> is <c>user</c>, <c>agent</c>, or <c>service</c> (an API key).</summary>
internal sealed record MemberIdentity(string Id, string Name, string? Color, string Kind = "user");

/// <summary>Why a state update was refused.</summary>
internal enum PresenceUpdate
{
    Applied,
    NotPresent,
    TooLarge,
}

/// <summary>Who is in each session: members, their connections and state. In memory on one node; in Redis across nodes.</summary>
internal interface IPresenceStore
{
    /// <summary>How often a transport should renew a live connection.</summary>
    TimeSpan RenewInterval { get; }

    /// <summary>Registers a connection of a member; the member joins if it was not present (or leaving).</summary>
    Task ConnectAsync(string sessionId, MemberIdentity identity, string connectionId, JsonObject? state = null);

    /// <summary>Keeps a connection alive for another TTL.</summary>
    void Renew(string sessionId, string memberId, string connectionId);

    /// <summary>Removes a connection; the member leaves after the grace period if it was the last (at once when <paramref name="immediate"/>).</summary>
    Task DisconnectAsync(string sessionId, string memberId, string connectionId, bool immediate = false);

    /// <summary>Replaces a present member's state; bursts are coalesced.</summary>
    Task<PresenceUpdate> SetStateAsync(string sessionId, string memberId, JsonObject state);

    /// <summary>The members present now, with connection counts and state.</summary>
    ValueTask<(IReadOnlyList<JsonObject> Members, int Total)> ListAsync(string sessionId, int limit, CancellationToken cancellationToken);
}
