namespace AiStream.Testing;

/// <summary>Where this repository's built assemblies are, and the dotnet host to run them with.</summary>
public static class BuildOutput
{
    /// <summary>The repository's root folder (the one holding AiStream.sln) above the calling assembly.</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            {
                if (File.Exists(Path.Combine(folder.FullName, "AiStream.sln")))
                {
                    return folder.FullName;
                }
            }

            throw new DirectoryNotFoundException("AiStream.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>
    /// <c>{project}/bin/{Configuration}/{framework}/{assembly}</c> in this repository, where the configuration and the
    /// framework are those in the calling assembly's own path (<c>.../bin/Release/net10.0/</c>; Release and net10.0
    /// when it is not under a <c>bin</c> folder). Throws when that build is missing.
    /// </summary>
    public static string Locate(string project, string assembly)
    {
        var segments = AppContext.BaseDirectory.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var bin = Array.LastIndexOf(segments, "bin");
        var configuration = bin >= 0 && bin + 1 < segments.Length ? segments[bin + 1] : "Release";
        var framework = bin >= 0 && bin + 2 < segments.Length ? segments[bin + 2] : "net10.0";
        var path = Path.Combine(RepositoryRoot, project, "bin", configuration, framework, assembly);
        return File.Exists(path)
            ? path
            : throw new FileNotFoundException($"{assembly} is not built for {configuration}: {path} is missing. Build the solution first.", path);
    }

    /// <summary>The dotnet host running this process (the test CLI sets DOTNET_HOST_PATH), else the one on PATH.</summary>
    public static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        var current = Environment.ProcessPath;
        return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }
}
