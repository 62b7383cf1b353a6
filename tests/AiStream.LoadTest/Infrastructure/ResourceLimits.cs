using System.Runtime.InteropServices;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// Raises this process's open-file limit to its hard limit (the shell's default soft limit of 1024 is too low for
/// thousands of watchers). Children started afterwards, such as the gateway, inherit it.
/// </summary>
internal static partial class ResourceLimits
{
    private const int RlimitNofile = 7;

    /// <summary>Sets the soft RLIMIT_NOFILE to the hard one and returns the soft limit now in force (or -1 off Linux).</summary>
    public static long RaiseOpenFilesLimit()
    {
        if (!OperatingSystem.IsLinux())
        {
            return -1;
        }

        if (getrlimit(RlimitNofile, out var limit) != 0)
        {
            return -1;
        }

        if (limit.Current < limit.Maximum)
        {
            var raised = new RLimit { Current = limit.Maximum, Maximum = limit.Maximum };
            if (setrlimit(RlimitNofile, in raised) == 0)
            {
                return (long)Math.Min(raised.Current, long.MaxValue);
            }
        }

        return (long)Math.Min(limit.Current, long.MaxValue);
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, out RLimit limit);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setrlimit(int resource, in RLimit limit);
}
