using System.ComponentModel;
using System.Globalization;
using Spectre.Console.Cli;

namespace AiStream.LoadTest.Cli;

/// <summary>Options every scenario takes.</summary>
public class ScenarioSettings : CommandSettings
{
    [CommandOption("--smoke")]
    [Description("Tiny sizes and short phases: proves the scenario works end to end in seconds (what the smoke tests run).")]
    public bool Smoke { get; set; }

    [CommandOption("--results <DIR>")]
    [Description("Folder for <scenario>/results.json and the charts. Default: .artifacts/loadtest in the repository, else ./loadtest-results.")]
    public string? Results { get; set; }

    [CommandOption("--url <URL>")]
    [Description("Measure a gateway that is already running at this loopback URL instead of starting one.")]
    public string? Url { get; set; }

    [CommandOption("--gateway-pid <PID>")]
    [Description("With --url: the gateway's process id, so its CPU time and memory can be read from /proc.")]
    public int? GatewayPid { get; set; }

    [CommandOption("--gateway-dll <PATH>")]
    [Description("The gateway assembly to start. Default: src/AiStream.Gateway/bin/<configuration of this tool>/net10.0/AiStream.Gateway.dll.")]
    public string? GatewayDll { get; set; }

    [CommandOption("--auth <ON|OFF>")]
    [Description("on (default): the gateway the tool starts gets a random HS256 signing key (AiStream__Auth__Jwt__SigningKey) and every request carries a JWT minted with it. off: neither.")]
    public string? Auth { get; set; }

    [CommandOption("--signing-key <KEY>")]
    [Description("With --url and --auth on: the gateway's HS256 signing key, so the tool can mint tokens it accepts. Without it, requests to a --url gateway carry no token.")]
    public string? SigningKey { get; set; }

    /// <summary>Whether <c>--auth</c> is on (its default).</summary>
    internal bool AuthOn => !string.Equals(Auth, "off", StringComparison.OrdinalIgnoreCase);

    [CommandOption("--duration <SECONDS>")]
    [Description("Length of each measured phase.")]
    public double? Duration { get; set; }

    public override Spectre.Console.ValidationResult Validate()
    {
        if (Url is not null && (!Uri.TryCreate(Url, UriKind.Absolute, out var uri) || !IsLoopback(uri)))
        {
            return Spectre.Console.ValidationResult.Error("--url must be a loopback http URL on this machine (127.0.0.0/8, localhost or [::1]).");
        }

        if (Auth is not null && !Auth.Equals("on", StringComparison.OrdinalIgnoreCase) && !Auth.Equals("off", StringComparison.OrdinalIgnoreCase))
        {
            return Spectre.Console.ValidationResult.Error("--auth takes on or off.");
        }

        if (SigningKey is not null && System.Text.Encoding.UTF8.GetByteCount(SigningKey) < 32)
        {
            return Spectre.Console.ValidationResult.Error("--signing-key must be at least 32 bytes of UTF-8, as the gateway requires.");
        }

        return Duration is <= 0 or > 600
            ? Spectre.Console.ValidationResult.Error("--duration must be between 0 and 600 seconds.")
            : base.Validate();
    }

    /// <summary>The results root folder.</summary>
    internal string ResultsRoot()
    {
        if (!string.IsNullOrEmpty(Results))
        {
            return Path.GetFullPath(Results);
        }

        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "AiStream.sln")))
            {
                return Path.Combine(folder.FullName, ".artifacts", "loadtest");
            }
        }

        return Path.GetFullPath("loadtest-results");
    }

    /// <summary>Parses a comma-separated list of integers ("1,100,500").</summary>
    internal static int[] ParseList(string value) =>
        value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(v => int.Parse(v, NumberStyles.None, CultureInfo.InvariantCulture))
            .ToArray();

    internal static Spectre.Console.ValidationResult ValidateList(string? value, string option, int min, int max)
    {
        if (value is null)
        {
            return Spectre.Console.ValidationResult.Success();
        }

        try
        {
            var items = ParseList(value);
            return items.Length > 0 && items.All(i => i >= min && i <= max)
                ? Spectre.Console.ValidationResult.Success()
                : Spectre.Console.ValidationResult.Error($"{option} takes numbers from {min} to {max}, comma-separated.");
        }
        catch (FormatException)
        {
            return Spectre.Console.ValidationResult.Error($"{option} takes numbers from {min} to {max}, comma-separated.");
        }
        catch (OverflowException)
        {
            return Spectre.Console.ValidationResult.Error($"{option} takes numbers from {min} to {max}, comma-separated.");
        }
    }

    private static bool IsLoopback(Uri uri) =>
        (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
        && (uri.IsLoopback || (System.Net.IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip)));
}
