using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// Tells the event sinks (webhooks) about events a Redis script logged outside the store's append: presence changes
/// and the end of a run whose node died. The node that ran the script reports what the script says it logged, so each
/// event is reported once, whether or not any node mirrors the session.
/// </summary>
internal sealed class ScriptedAppends(ISessionEventSink[] sinks)
{
    public bool Listening => Array.Exists(sinks, s => s.Listening);

    /// <summary>Reports <paramref name="events"/>, logged at positions from <paramref name="first"/> on.</summary>
    public void Report(string sessionId, long first, IReadOnlyList<JsonObject> events)
    {
        if (first <= 0 || events.Count == 0)
        {
            return;
        }

        var appended = new (long, JsonObject)[events.Count];
        for (var i = 0; i < events.Count; i++)
        {
            // As the log holds it (the script spliced the position into the stored body).
            events[i]["seq"] = first + i;
            appended[i] = (first + i, events[i]);
        }

        foreach (var sink in sinks)
        {
            if (sink.Listening)
            {
                sink.Appended(sessionId, appended);
            }
        }
    }
}
