using System.Text.Json.Serialization;

namespace AiStream.LoadTest.Results;

/// <summary>Everything one scenario run measured: what <c>results.json</c> holds.</summary>
internal sealed class ScenarioResult
{
    public required string Scenario { get; init; }

    public required bool Smoke { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    public double DurationSeconds { get; set; }

    /// <summary>The machine: cores, OS, runtime; figures only compare on the same one.</summary>
    public Dictionary<string, string> Machine { get; init; } = new()
    {
        ["cores"] = Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        ["runtime"] = System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
    };

    /// <summary>The options the run used.</summary>
    public Dictionary<string, string> Settings { get; init; } = [];

    /// <summary>One row per measured cell (target × parameters).</summary>
    public List<ResultRow> Rows { get; init; } = [];

    /// <summary>Correctness failures found while measuring (lost or duplicated events, short streams); none is a pass.</summary>
    public List<string> Problems { get; init; } = [];

    /// <summary>What was not measured and why (nginx or Nchan absent, ...), and how figures were taken.</summary>
    public List<string> Notes { get; init; } = [];
}

/// <summary>One measured cell: labels name it (target, concurrency, ...), metrics are its figures.</summary>
internal sealed class ResultRow
{
    public required Dictionary<string, string> Labels { get; init; }

    public Dictionary<string, double> Metrics { get; init; } = [];

    [JsonIgnore]
    public string Name => string.Join(' ', Labels.Select(l => l.Key + "=" + l.Value));

    public double this[string metric]
    {
        get => Metrics.TryGetValue(metric, out var value) ? value : double.NaN;
        set => Metrics[metric] = value;
    }
}

/// <summary>A column of the console table: a label or a metric, with its heading and format.</summary>
internal sealed record Column(string Key, string Heading, string Format = "0.##", bool IsLabel = false);

/// <summary>A bar chart of one metric over every row that has it.</summary>
internal sealed record ChartSpec(string FileName, string Metric, string Title, string AxisLabel);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(ScenarioResult))]
internal sealed partial class ResultJsonContext : JsonSerializerContext;
