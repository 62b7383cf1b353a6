using System.Diagnostics;
using System.Globalization;
using AiStream.LoadTest.Infrastructure;
using AiStream.LoadTest.Results;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Cli;

/// <summary>
/// What every scenario command does around its measurement: raise the open-file limit, run, print the table, write
/// the JSON and charts, and exit non-zero when the run found a correctness problem (lost, duplicated or short streams).
/// </summary>
public abstract class ScenarioCommand<TSettings> : AsyncCommand<TSettings>
    where TSettings : ScenarioSettings
{
    /// <summary>The command's name, also the results subfolder.</summary>
    protected abstract string Name { get; }

    internal abstract IReadOnlyList<Column> Columns { get; }

    internal abstract IReadOnlyList<ChartSpec> Charts { get; }

    internal abstract Task RunAsync(TSettings settings, ScenarioResult result, CancellationToken cancellationToken);

    public override async Task<int> ExecuteAsync(CommandContext context, TSettings settings, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var result = new ScenarioResult { Scenario = Name, Smoke = settings.Smoke, StartedAt = DateTimeOffset.UtcNow };
        var limit = ResourceLimits.RaiseOpenFilesLimit();
        result.Settings["toolOpenFilesLimit"] = limit.ToString(CultureInfo.InvariantCulture);
        if (settings.Url is not null)
        {
            result.Settings["url"] = settings.Url;
        }

        result.Settings["loadAverageAtStart"] = ProcStats.LoadAverage().ToString("0.00", CultureInfo.InvariantCulture);
        var machineBefore = ProcStats.MachineBusySeconds();
        var clock = Stopwatch.StartNew();
        try
        {
            await RunAsync(settings, result, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            AnsiConsole.MarkupLine("[yellow]Cancelled.[/]");
            return 130;
        }

        result.DurationSeconds = Math.Round(clock.Elapsed.TotalSeconds, 1);
        result.Settings["loadAverageAtEnd"] = ProcStats.LoadAverage().ToString("0.00", CultureInfo.InvariantCulture);
        result.Settings["machineBusyCores"] = ((ProcStats.MachineBusySeconds() - machineBefore) / clock.Elapsed.TotalSeconds).ToString("0.00", CultureInfo.InvariantCulture);
        result.Notes.Add("other cores = CPU the machine spent outside the measured processes and this tool during a phase: well above 0 means something else was running and the row is not comparable");
        await ResultWriter.WriteAsync(result, settings.ResultsRoot(), Columns, Charts);
        foreach (var problem in result.Problems)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]problem:[/] {problem}");
        }

        return result.Problems.Count == 0 ? 0 : 1;
    }
}
