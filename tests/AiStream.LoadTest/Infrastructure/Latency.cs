using System.Diagnostics;
using HdrHistogram;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>A thread-safe latency histogram in microseconds (HdrHistogram, 3 significant digits, up to 10 minutes).</summary>
internal sealed class Latency
{
    private readonly LongConcurrentHistogram _histogram = new(1, TimeSpan.FromMinutes(10).Ticks / 10, 3);

    public long Count => _histogram.TotalCount;

    /// <summary>Records the time from <paramref name="startTimestamp"/> (a <see cref="Stopwatch"/> timestamp) to now.</summary>
    public void RecordSince(long startTimestamp) => RecordTicks(Stopwatch.GetTimestamp() - startTimestamp);

    /// <summary>Records a duration measured in <see cref="Stopwatch"/> ticks.</summary>
    public void RecordTicks(long stopwatchTicks)
    {
        var micros = (long)(stopwatchTicks * 1_000_000.0 / Stopwatch.Frequency);
        _histogram.RecordValue(Math.Clamp(micros, 1, _histogram.HighestTrackableValue));
    }

    /// <summary>The value at <paramref name="percentile"/> (0..100) in milliseconds; NaN when nothing was recorded.</summary>
    public double PercentileMs(double percentile) => Count == 0 ? double.NaN : _histogram.GetValueAtPercentile(percentile) / 1000.0;

    public double MaxMs => Count == 0 ? double.NaN : _histogram.GetMaxValue() / 1000.0;

    public double MeanMs => Count == 0 ? double.NaN : _histogram.GetMean() / 1000.0;
}
