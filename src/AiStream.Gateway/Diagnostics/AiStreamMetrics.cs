using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace AiStream.Gateway.Diagnostics;

/// <summary>Token usage of one completion, whoever produced it.</summary>
/// <param name="Model">Public model name that served the request (after any fallback).</param>
/// <param name="Provider">Provider name.</param>
/// <param name="InputTokens">Prompt tokens.</param>
/// <param name="OutputTokens">Completion tokens.</param>
/// <param name="Estimated">True when counted by our tokenizer because the upstream reported none.</param>
internal readonly record struct UsageRecord(string Model, string Provider, long InputTokens, long OutputTokens, bool Estimated);

/// <summary>The gateway's instruments, on the <c>AiStream</c> meter.</summary>
internal sealed class AiStreamMetrics
{
    /// <summary>Meter name to subscribe to (OpenTelemetry, dotnet-counters).</summary>
    public const string MeterName = "AiStream";

    private readonly Histogram<long> _tokenUsage;
    private readonly Counter<long> _completions;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Counter<long> _upstreamFailures;

    public AiStreamMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(MeterName);
        _tokenUsage = meter.CreateHistogram<long>("gen_ai.client.token.usage", "{token}", "Tokens used per completion, by type (input/output).");
        _completions = meter.CreateCounter<long>("aistream.completions", "{request}", "Completions finished, by model and outcome.");
        _timeToFirstToken = meter.CreateHistogram<double>("aistream.completions.time_to_first_token", "s", "Time from request to the first chunk sent to the client.");
        _upstreamFailures = meter.CreateCounter<long>("aistream.upstream.failures", "{failure}", "Upstream attempts that failed before the first token, by provider and kind.");
    }

    public void RecordUsage(in UsageRecord usage)
    {
        var source = usage.Estimated ? "estimated" : "upstream";
        _tokenUsage.Record(usage.InputTokens, Tags(usage, "input", source));
        _tokenUsage.Record(usage.OutputTokens, Tags(usage, "output", source));

        static TagList Tags(in UsageRecord u, string type, string source) => new()
        {
            { "gen_ai.request.model", u.Model },
            { "aistream.provider", u.Provider },
            { "gen_ai.token.type", type },
            { "aistream.usage.source", source },
        };
    }

    public void RecordCompletion(string model, string outcome) =>
        _completions.Add(1, new KeyValuePair<string, object?>("gen_ai.request.model", model), new KeyValuePair<string, object?>("aistream.outcome", outcome));

    public void RecordTimeToFirstToken(string model, TimeSpan elapsed) =>
        _timeToFirstToken.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>("gen_ai.request.model", model));

    public void RecordUpstreamFailure(string provider, string kind) =>
        _upstreamFailures.Add(1, new KeyValuePair<string, object?>("aistream.provider", provider), new KeyValuePair<string, object?>("aistream.failure", kind));
}
