using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Hosting;

/// <summary>
/// How the gateway starts from a command line: its content root is the application's folder unless one is configured,
/// and a start that fails for a reason the operator can fix (an invalid setting, a port in use) is one line on stderr
/// and exit code 1, not a crash dump.
/// </summary>
internal static class StartupFailure
{
    private const string HostCategory = "Microsoft.Extensions.Hosting.Internal.Host";
    private static volatile bool s_started;

    /// <summary>
    /// Holds back the host's own "Hosting failed to start" error (the exception and its stack) until the host has
    /// started: <see cref="Run"/> says it in one line instead, or rethrows what it cannot explain.
    /// </summary>
    public static void QuietStartFailures(this ILoggingBuilder logging) =>
        logging.AddFilter(HostCategory, level => s_started || level < LogLevel.Error);

    /// <summary>Where appsettings.json and wwwroot are: the configured content root, else the application's folder.</summary>
    public static string? ContentRoot(string[] args) =>
        args.Any(a => a.StartsWith("--contentRoot", StringComparison.OrdinalIgnoreCase) || a.StartsWith("/contentRoot", StringComparison.OrdinalIgnoreCase))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ASPNETCORE_CONTENTROOT"))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("DOTNET_CONTENTROOT"))
            ? null
            : AppContext.BaseDirectory;

    /// <summary>Runs the app; 0 when it stopped normally, 1 (with one line on stderr) when it could not start.</summary>
    public static int Run(WebApplication app)
    {
        app.Lifetime.ApplicationStarted.Register(() => s_started = true);
        try
        {
            app.Run();
            return 0;
        }
        // Only as its own process: a host running Program inside another process (WebApplicationFactory in tests) gets the exception.
        catch (Exception ex) when (System.Reflection.Assembly.GetEntryAssembly() == typeof(StartupFailure).Assembly && Explain(ex) is { } line)
        {
            Console.Error.WriteLine("aistream: " + line);
            return 1;
        }
    }

    /// <summary>One line for a failure the operator can fix, or null for anything else (a bug: let it crash with its stack).</summary>
    internal static string? Explain(Exception exception) => exception switch
    {
        OptionsValidationException invalid =>
            $"invalid configuration: {string.Join(" ", invalid.Failures.Select(f => Describe(invalid.OptionsType, f)))} Fix the setting (appsettings.json, AiStream__... environment variables or --AiStream:... arguments) and start again.",
        IOException { InnerException: AddressInUseException } inUse =>
            $"{FirstSentence(inUse.Message)} Stop what is listening there, or choose another address with --urls or ASPNETCORE_URLS.",
        IOException { InnerException: SocketException { SocketErrorCode: SocketError.AccessDenied } } denied =>
            $"{FirstSentence(denied.Message)} Ports below 1024 need privileges; choose another with --urls or ASPNETCORE_URLS.",
        // One line per broken file, each naming the file and the key.
        Agents.PromptDefinitionsException definitions =>
            string.Join("\naistream: ", definitions.Errors) + "\naistream: invalid prompt definitions (AiStream:Agents:PromptsPath); fix the files above and start again.",
        AggregateException { InnerExceptions.Count: 1 } aggregate => Explain(aggregate.InnerExceptions[0]),
        _ => null,
    };

    /// <summary>A data-annotation failure names its full key (<c>AiStream:Limits:MessagesPerSecond: must be ...</c>).</summary>
    private static string Describe(Type options, string failure)
    {
        var match = System.Text.RegularExpressions.Regex.Match(failure, "members: '(?<member>[^']+)' with the error: '(?<error>.*)'\\.?$",
            System.Text.RegularExpressions.RegexOptions.None, TimeSpan.FromSeconds(1));
        if (!match.Success || options.GetField("SectionName")?.GetValue(null) is not string section)
        {
            return failure.TrimEnd('.') + ".";
        }

        return $"{section}:{match.Groups["member"].Value}: {match.Groups["error"].Value.TrimEnd('.')}.";
    }

    private static string FirstSentence(string message)
    {
        var line = message.Split('\n')[0].Trim();
        return line.EndsWith('.') ? line : line + ".";
    }
}
