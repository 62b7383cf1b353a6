using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Presence;

/// <summary>A run as a member of its session: <c>agent:&lt;runId&gt;</c>, kind <c>agent</c>, renewed while it runs.</summary>
internal sealed class RunPresence(IPresenceStore presence, TimeProvider time) : IRunPresence
{
    public async Task<IRunMember> EnterAsync(string sessionId, string runId, string name, JsonObject state)
    {
        var agent = new MemberIdentity("agent:" + runId, name, null, "agent");
        try
        {
            await presence.ConnectAsync(sessionId, agent, runId, state).ConfigureAwait(false);
        }
        catch (MemberLimitExceededException)
        {
            // A full session still gets its answer; the agent is just not listed as a member.
            return Absent.Instance;
        }

        return new Member(presence, time, sessionId, agent.Id, runId);
    }

    private sealed class Member : IRunMember
    {
        private readonly IPresenceStore _presence;
        private readonly string _sessionId;
        private readonly string _memberId;
        private readonly string _connectionId;
        private readonly ITimer _renewal;

        public Member(IPresenceStore presence, TimeProvider time, string sessionId, string memberId, string connectionId)
        {
            (_presence, _sessionId, _memberId, _connectionId) = (presence, sessionId, memberId, connectionId);
            _renewal = time.CreateTimer(_ => _presence.Renew(_sessionId, _memberId, _connectionId), null, presence.RenewInterval, presence.RenewInterval);
        }

        public async Task SetStateAsync(JsonObject state) => await _presence.SetStateAsync(_sessionId, _memberId, state).ConfigureAwait(false);

        public async ValueTask DisposeAsync()
        {
            await _renewal.DisposeAsync().ConfigureAwait(false);
            await _presence.DisconnectAsync(_sessionId, _memberId, _connectionId, immediate: true).ConfigureAwait(false);
        }
    }

    private sealed class Absent : IRunMember
    {
        public static readonly Absent Instance = new();

        public Task SetStateAsync(JsonObject state) => Task.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
