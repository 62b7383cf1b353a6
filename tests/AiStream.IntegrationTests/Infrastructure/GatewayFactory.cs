using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>The real gateway on Kestrel on a free loopback port, configured per test.</summary>
internal sealed class GatewayFactory : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> _settings;
    private readonly TimeProvider? _time;
    private readonly Action<IServiceCollection>? _services;

    public GatewayFactory(Dictionary<string, string?>? settings = null, TimeProvider? time = null, Action<IServiceCollection>? services = null)
    {
        _settings = settings ?? [];
        _time = time;
        _services = services;
        // Listen explicitly on a free loopback port rather than UseKestrel(0), whose address rewrite can race the start.
        UseKestrel(options => options.Listen(System.Net.IPAddress.Loopback, 0));
    }

    /// <summary>Starts the server and returns its base address.</summary>
    public Uri Start()
    {
        StartServer();
        var address = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("localhost", "127.0.0.1", StringComparison.Ordinal) + "/");
    }

    /// <summary>Warnings and errors the gateway logged so far.</summary>
    public Microsoft.Extensions.Logging.Testing.FakeLogCollector Logs => Services.GetFakeLogCollector();

    /// <summary>A plain HttpClient against the Kestrel address.</summary>
    public HttpClient Http() => new() { BaseAddress = Start(), Timeout = TimeSpan.FromSeconds(60) };

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.ConfigureAppConfiguration(config => config
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Default"] = "Warning",
                ["Logging:LogLevel:Microsoft.Hosting.Lifetime"] = "Warning",
                // The repository's prompts/, copied beside the tests (the in-process content root is the project folder).
                ["AiStream:Agents:PromptsPath"] = Path.Combine(AppContext.BaseDirectory, "prompts"),
            })
            .AddInMemoryCollection(_settings));
        // Nothing on the console: many tests provoke errors on purpose, and passing tests should not print failures.
        // What the gateway logged (warnings and up) is kept in Logs for a test that wants to look or explain.
        builder.ConfigureLogging(logging => logging.ClearProviders().SetMinimumLevel(LogLevel.Warning).AddFakeLogging());
        if (_time is not null)
        {
            builder.ConfigureServices(services => services.Replace(ServiceDescriptor.Singleton(_time)));
        }

        if (_services is not null)
        {
            builder.ConfigureServices(_services);
        }
    }
}

/// <summary>Settings builders for common provider layouts.</summary>
internal static class Settings
{
    /// <summary>Model <paramref name="model"/> on an OpenAI-compatible provider at <paramref name="baseUrl"/>.</summary>
    public static Dictionary<string, string?> Compatible(string baseUrl, string model = "gpt-test", string provider = "up", int maxRetries = 0) => new()
    {
        [$"AiStream:Providers:{provider}:Type"] = "OpenAICompatible",
        [$"AiStream:Providers:{provider}:Endpoint"] = baseUrl,
        [$"AiStream:Providers:{provider}:ApiKey"] = "sk-test",
        [$"AiStream:Providers:{provider}:MaxRetries"] = maxRetries.ToString(System.Globalization.CultureInfo.InvariantCulture),
        [$"AiStream:Providers:{provider}:RetryBaseDelayMs"] = "10",
        [$"AiStream:Models:{model}:Provider"] = provider,
        [$"AiStream:Models:{model}:UpstreamModel"] = model + "-upstream",
        ["AiStream:Providers:sim:Type"] = "Simulated",
        ["AiStream:Providers:sim:TokensPerSecond"] = "0",
        ["AiStream:Providers:sim:TimeToFirstTokenMs"] = "0",
    };

    public static Dictionary<string, string?> With(this Dictionary<string, string?> settings, string key, object value)
    {
        settings[key] = Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture);
        return settings;
    }
}
