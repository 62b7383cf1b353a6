using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// How a run is a member of its session while it runs, so a dashboard shows a thinking agent the way it shows a
/// person. Presence implements it; sessions only say when a run enters, changes state and leaves.
/// </summary>
internal interface IRunPresence
{
    /// <summary>Makes the run present, named after its model, with a state; it leaves when the handle is disposed.</summary>
    Task<IRunMember> EnterAsync(string sessionId, string runId, string name, JsonObject state);
}

/// <summary>A run present in its session.</summary>
internal interface IRunMember : IAsyncDisposable
{
    /// <summary>Replaces the run's member state (<c>writing</c>, <c>calling_tool</c>).</summary>
    Task SetStateAsync(JsonObject state);
}
