using System.Diagnostics;
using System.Text;
using System.Text.Json;
using AiStream.Testing;

namespace AiStream.LoadTest.Tests;

/// <summary>Deletes a run's results folder after the test; a failing assertion carries the tool's console output.</summary>
internal sealed class ResultsFolder(string path) : IDisposable
{
    public void Dispose()
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }
}

/// <summary>Runs the built load tool as a child process and reads the results.json it wrote.</summary>
internal static class LoadTool
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(180);

    /// <summary>The finished run: exit code, console output and the parsed results (null when none was written).</summary>
    public sealed record Run(int ExitCode, string Output, JsonDocument? Results)
    {
        public JsonElement Root => Results?.RootElement ?? throw new InvalidOperationException("No results.json was written:\n" + Output);

        public IEnumerable<JsonElement> Rows => Root.GetProperty("rows").EnumerateArray();

        public IEnumerable<string> Notes => Root.GetProperty("notes").EnumerateArray().Select(n => n.GetString()!);

        public IEnumerable<string> Problems => Root.GetProperty("problems").EnumerateArray().Select(n => n.GetString()!);

        public IEnumerable<JsonElement> RowsWhere(string label, string value) =>
            Rows.Where(r => r.GetProperty("labels").TryGetProperty(label, out var v) && v.GetString() == value);
    }

    public static double Metric(JsonElement row, string name) =>
        row.GetProperty("metrics").TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetDouble() : double.NaN;

    public static async Task<Run> RunAsync(string resultsFolder, params string[] arguments)
    {
        var info = new ProcessStartInfo(BuildOutput.DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = resultsFolder,
        };
        info.ArgumentList.Add(ToolAssembly());
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.ArgumentList.Add("--results");
        info.ArgumentList.Add(resultsFolder);
        var output = new StringBuilder();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(Timeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"The load tool did not finish within {Timeout.TotalSeconds} s:\n{output}");
        }

        await process.WaitForExitAsync();
        var json = Path.Combine(resultsFolder, arguments[0], "results.json");
        return new Run(process.ExitCode, output.ToString(), File.Exists(json) ? JsonDocument.Parse(await File.ReadAllTextAsync(json)) : null);
    }

    /// <summary>A fresh folder for one run's results.</summary>
    public static string NewResultsFolder() => Directory.CreateTempSubdirectory("aistream-loadtest-smoke-").FullName;

    /// <summary><c>tests/AiStream.LoadTest/bin/{Configuration}/net10.0/AiStream.LoadTest.dll</c>, the configuration these tests were built with.</summary>
    private static string ToolAssembly() => BuildOutput.Locate(Path.Combine("tests", "AiStream.LoadTest"), "AiStream.LoadTest.dll");
}
