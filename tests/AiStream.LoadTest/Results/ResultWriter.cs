using System.Globalization;
using System.Text.Json;
using ScottPlot;
using Spectre.Console;

namespace AiStream.LoadTest.Results;

/// <summary>Prints the results table and writes <c>results.json</c> and the charts (PNG, ScottPlot) to the results folder.</summary>
internal static class ResultWriter
{
    public static async Task<string> WriteAsync(ScenarioResult result, string resultsRoot, IReadOnlyList<Column> columns, IReadOnlyList<ChartSpec> charts)
    {
        var folder = Path.Combine(resultsRoot, result.Scenario);
        Directory.CreateDirectory(folder);
        PrintTable(result, columns);
        foreach (var chart in charts)
        {
            try
            {
                WriteChart(result, chart, Path.Combine(folder, chart.FileName));
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or InvalidOperationException)
            {
                // SkiaSharp's native library comes with the package (NativeAssets.Linux.NoDependencies); should it not
                // load on some machine, the JSON is still complete and the chart is named as missing.
                result.Notes.Add($"chart {chart.FileName} not drawn: {e.GetBaseException().Message}");
            }
        }

        // A figure that could not be taken (no process id to read, nothing recorded) is left out rather than written as NaN.
        foreach (var row in result.Rows)
        {
            foreach (var key in row.Metrics.Where(m => !double.IsFinite(m.Value)).Select(m => m.Key).ToList())
            {
                row.Metrics.Remove(key);
            }
        }

        var json = Path.Combine(folder, "results.json");
        await using (var stream = File.Create(json))
        {
            await JsonSerializer.SerializeAsync(stream, result, ResultJsonContext.Default.ScenarioResult);
        }

        foreach (var note in result.Notes)
        {
            AnsiConsole.MarkupLineInterpolated($"[grey]note:[/] {note}");
        }

        AnsiConsole.MarkupLineInterpolated($"Results: [blue]{json}[/]");
        return json;
    }

    private static void PrintTable(ScenarioResult result, IReadOnlyList<Column> columns)
    {
        var table = new Table().Title(result.Scenario + (result.Smoke ? " (smoke)" : string.Empty));
        foreach (var column in columns)
        {
            table.AddColumn(new TableColumn(column.Heading) { Alignment = column.IsLabel ? Justify.Left : Justify.Right });
        }

        foreach (var row in result.Rows)
        {
            table.AddRow(columns.Select(c => Markup.Escape(Cell(row, c))).ToArray());
        }

        AnsiConsole.Write(table);
    }

    private static string Cell(ResultRow row, Column column)
    {
        if (column.IsLabel)
        {
            return row.Labels.TryGetValue(column.Key, out var label) ? label : string.Empty;
        }

        var value = row[column.Key];
        return double.IsNaN(value) ? "-" : value.ToString(column.Format, CultureInfo.InvariantCulture);
    }

    private static void WriteChart(ScenarioResult result, ChartSpec spec, string path)
    {
        var rows = result.Rows.Where(r => !double.IsNaN(r[spec.Metric])).ToList();
        if (rows.Count == 0)
        {
            return;
        }

        // Labels that are the same on every row go under the axis once; the bars are named by the ones that vary.
        var keys = rows.SelectMany(r => r.Labels.Keys).Distinct().ToList();
        var varying = keys.Where(k => rows.Select(r => r.Labels.GetValueOrDefault(k, string.Empty)).Distinct().Count() > 1).ToList();
        var constant = keys.Except(varying).Select(k => k + "=" + rows[0].Labels[k]).ToList();
        var colorKey = varying.Contains("target") ? "target" : varying.FirstOrDefault() ?? "target";
        var colorValues = rows.Select(r => r.Labels.GetValueOrDefault(colorKey, string.Empty)).Distinct().ToList();
        var palette = new ScottPlot.Palettes.Category10();
        var plot = new Plot();
        var bars = rows.Select((r, i) => new Bar
        {
            Position = i,
            Value = r[spec.Metric],
            FillColor = palette.GetColor(colorValues.IndexOf(r.Labels.GetValueOrDefault(colorKey, string.Empty))),
            Label = r[spec.Metric].ToString(Math.Abs(r[spec.Metric]) >= 100 ? "0" : "0.##", CultureInfo.InvariantCulture),
        }).ToList();
        plot.Add.Bars(bars);
        var ticks = rows.Select((r, i) => new Tick(i, string.Join('\n', varying.Select(k => r.Labels.GetValueOrDefault(k, string.Empty))))).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Axes.Margins(bottom: 0, top: 0.1);
        plot.Title(spec.Title);
        plot.YLabel(spec.AxisLabel);
        plot.XLabel(string.Join("   ", varying.Count > 0 ? [string.Join(" / ", varying), .. constant] : constant));
        plot.Axes.Bottom.MinimumSize = (16 * Math.Max(1, varying.Count)) + 30;
        plot.SavePng(path, Math.Max(640, 90 * rows.Count), 480 + (16 * varying.Count));
    }
}
