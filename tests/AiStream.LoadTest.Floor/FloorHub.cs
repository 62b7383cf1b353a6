using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.SignalR;

namespace AiStream.LoadTest.Floor;

/// <summary>
/// The floor's hub: <c>Join(sessionId, after)</c> answers like the gateway's and adds the connection to the session's
/// group, the least a hub that fans out by session keeps per joined connection.
/// </summary>
internal abstract class FloorHub : Hub
{
    public async Task<JoinResult> Join(string sessionId, long? afterSeq)
    {
        if (!SessionIds.IsValid(sessionId))
        {
            throw new HubException("Invalid session id.");
        }

        await Groups.AddToGroupAsync(Context.ConnectionId, sessionId, Context.ConnectionAborted);
        return new JoinResult(sessionId, afterSeq ?? 0, Snapshot: false);
    }
}

/// <summary>The hub behind authentication (the floor with a signing key); [Authorize] as the gateway's hub will have.</summary>
[Authorize]
internal sealed class AuthorizedFloorHub : FloorHub;

/// <summary>The hub of the bare floor: no authorization metadata, since no authorization middleware runs.</summary>
internal sealed class BareFloorHub : FloorHub;

/// <summary>What <c>Join</c> answers, as the gateway's <c>JoinResult</c> (camelCase through SignalR's JSON protocol).</summary>
internal sealed record JoinResult(string SessionId, long HeadSeq, bool Snapshot);

/// <summary>Session ids as the gateway accepts them, checked without a regex: 1 to 128 of letters, digits and - _ : .</summary>
internal static class SessionIds
{
    public static bool IsValid(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > 128)
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_' or ':' or '.'))
            {
                return false;
            }
        }

        return true;
    }
}
