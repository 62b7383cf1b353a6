using System.Diagnostics.Metrics;

namespace AiStream.Gateway.Limits;

/// <summary><c>aistream.limits.refused</c>: requests, connections and messages refused by a limit, by limit.</summary>
internal sealed class LimitsMetrics
{
    private readonly Counter<long> _refused;

    public LimitsMetrics(IMeterFactory meterFactory) =>
        _refused = meterFactory.Create("AiStream").CreateCounter<long>("aistream.limits.refused", "{refusal}", "Requests, connections and messages refused by a limit, by limit.");

    public void Refused(string limit) => _refused.Add(1, new KeyValuePair<string, object?>("aistream.limit", limit));
}
