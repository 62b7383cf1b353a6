using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>The recorded real provider streams in tests/fixtures/providers, inside the repository.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> Directory = new(Locate);

    /// <summary>The repository's root folder (the one holding AiStream.sln).</summary>
    public static string RepositoryRoot => FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "AiStream.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("AiStream.sln not found above " + AppContext.BaseDirectory);
    }

    public static string Path(string name) => System.IO.Path.Combine(Directory.Value, name);

    public static byte[] Bytes(string name) => File.ReadAllBytes(Path(name));

    /// <summary>The SSE events of a fixture, each as the exact text of one event including its trailing blank line.</summary>
    public static IReadOnlyList<string> Events(string name)
    {
        var text = Encoding.UTF8.GetString(Bytes(name)).Replace("\r\n", "\n", StringComparison.Ordinal);
        return text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e + "\n\n").ToList();
    }

    /// <summary>The data payloads of a fixture, <c>[DONE]</c> excluded.</summary>
    public static IReadOnlyList<string> Payloads(string name) => DataPayloads(Encoding.UTF8.GetString(Bytes(name)));

    /// <summary>The data payloads of an SSE text, <c>[DONE]</c> excluded.</summary>
    public static List<string> DataPayloads(string sse) =>
        sse.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n')
            .Where(l => l.StartsWith("data:", StringComparison.Ordinal))
            .Select(l => l["data:".Length..].TrimStart(' '))
            .Where(p => p != "[DONE]")
            .ToList();

    private static string Locate()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "AiStream.sln")))
            {
                var fixtures = System.IO.Path.GetFullPath(System.IO.Path.Combine(dir.FullName, "tests", "fixtures", "providers"));
                if (!System.IO.Directory.Exists(fixtures))
                {
                    throw new DirectoryNotFoundException($"Recorded provider streams not found at {fixtures}.");
                }

                return fixtures;
            }
        }

        throw new DirectoryNotFoundException("AiStream.sln not found above " + AppContext.BaseDirectory);
    }
}
