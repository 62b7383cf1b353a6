using System.Globalization;
using System.Runtime.InteropServices;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// CPU time and memory of another process, read from Linux's /proc (nothing else gives another process's figures
/// without attaching to it). CPU is utime+stime of every thread, in clock ticks converted to seconds.
/// </summary>
internal static partial class ProcStats
{
    private const int ScClkTck = 2;
    private static readonly Lazy<double> TicksPerSecond = new(() =>
    {
        var ticks = sysconf(ScClkTck);
        return ticks > 0 ? ticks : 100;
    });

    /// <summary>utime+stime of <paramref name="pid"/> in seconds, or NaN when it cannot be read.</summary>
    public static double CpuSeconds(int pid)
    {
        try
        {
            var stat = File.ReadAllText(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/stat"));
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');

            // After "pid (comm) " the fields start at the third (state); utime is the 14th and stime the 15th.
            var utime = long.Parse(fields[11], CultureInfo.InvariantCulture);
            var stime = long.Parse(fields[12], CultureInfo.InvariantCulture);
            return (utime + stime) / TicksPerSecond.Value;
        }
        catch (IOException)
        {
            return double.NaN;
        }
    }

    /// <summary>
    /// Busy CPU seconds of the whole machine (every core, from /proc/stat), so a phase can tell how much CPU went to
    /// processes other than the ones measured: on a shared machine that is what makes a run comparable or not.
    /// </summary>
    public static double MachineBusySeconds()
    {
        try
        {
            var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);

            // cpu user nice system idle iowait irq softirq steal ...
            long busy = 0;
            foreach (var i in new[] { 1, 2, 3, 6, 7, 8 })
            {
                busy += long.Parse(fields[i], CultureInfo.InvariantCulture);
            }

            return busy / TicksPerSecond.Value;
        }
        catch (IOException)
        {
            return double.NaN;
        }
    }

    /// <summary>The 1-minute load average, or NaN.</summary>
    public static double LoadAverage()
    {
        try
        {
            return double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return double.NaN;
        }
    }

    /// <summary>CPU seconds of this process (the load tool: clients, publisher, mock upstream).</summary>
    public static double OwnCpuSeconds() => System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    /// <summary>CPU seconds of <paramref name="pid"/> and of every process whose parent it is (nginx's workers).</summary>
    public static double CpuSecondsWithChildren(int pid) => CpuSeconds(pid) + Children(pid).Sum(CpuSeconds);

    /// <summary>VmRSS of <paramref name="pid"/> in bytes, or NaN.</summary>
    public static double RssBytes(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/status")))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    var kb = line["VmRSS:".Length..].Trim().Split(' ')[0];
                    return long.Parse(kb, CultureInfo.InvariantCulture) * 1024.0;
                }
            }
        }
        catch (IOException)
        {
        }

        return double.NaN;
    }

    /// <summary>The soft "Max open files" limit of <paramref name="pid"/> from /proc/&lt;pid&gt;/limits, or null.</summary>
    public static string? OpenFilesLimit(int pid)
    {
        try
        {
            var line = File.ReadLines(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/limits"))
                .FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal));
            var parts = line?["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return parts is { Length: >= 2 } ? parts[0] + " (hard " + parts[1] + ")" : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static List<int> Children(int parent)
    {
        var children = new List<int>();
        foreach (var folder in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(folder), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                var stat = File.ReadAllText(Path.Combine(folder, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1], CultureInfo.InvariantCulture) == parent)
                {
                    children.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process ended while we looked.
            }
        }

        return children;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long sysconf(int name);
}
