using System.ComponentModel;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.SemanticKernel;
using static AiStream.IntegrationTests.Agents.AgentTrace;

namespace AiStream.IntegrationTests.Agents;

/// <summary>
/// The host application of docs/agents.md, compiled and run: it references the gateway, registers a Semantic Kernel
/// plugin in DI, and an agent defined in its prompts folder calls the plugin's function.
/// </summary>
public sealed class HostPluginTests : IDisposable
{
    private readonly string _prompts = Directory.CreateTempSubdirectory("aistream-host-").FullName;

    public void Dispose() => Directory.Delete(_prompts, recursive: true);

    [Fact]
    public async Task AHostApplication_AddsAPluginInDI_AndItsAgentCallsIt()
    {
        Directory.CreateDirectory(Path.Combine(_prompts, "agents"));
        await File.WriteAllTextAsync(Path.Combine(_prompts, "agents", "forecaster.yaml"), """
            name: forecaster
            instructions: Answer questions about the weather with get_weather.
            tools: [get_weather]
            """);

        // As in docs/agents.md, "Your own tools".
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Configuration["AiStream:Agents:PromptsPath"] = _prompts;
        builder.Configuration["AiStream:Providers:sim:TokensPerSecond"] = "0";
        builder.AddAiStream();
        builder.Services.AddSingleton(KernelPluginFactory.CreateFromType<WeatherPlugin>("weather"));
        await using var app = builder.Build();
        app.MapAiStream();
        await app.StartAsync();

        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First() + "/") };
        var session = "host-" + Guid.NewGuid().ToString("N")[..8];
        using var watcher = await SessionWatcher.OpenAsync(http, session);
        await StartAsync(http, session, Agent("forecaster", "What is the weather in Oslo?"));
        await watcher.ReadUntilAsync(e => e.IsRunEnd);

        var agents = (await http.GetFromJsonAsync<JsonObject>("api/agents"))!;
        Assert.Contains(agents["tools"]!.AsArray(), t => t!["name"]!.GetValue<string>() == "get_weather");
        Assert.Equal("Light snow, -3 °C in Oslo", watcher.Seen.Single(e => e.Type == "TOOL_CALL_RESULT").Str("content"));
        Assert.Contains("Light snow", FinalText(watcher.Seen.Select(e => e.Data)), StringComparison.Ordinal);
        await app.StopAsync();
    }

    /// <summary>The example plugin: any class whose methods carry <c>[KernelFunction]</c>.</summary>
    public sealed class WeatherPlugin
    {
        [KernelFunction("get_weather")]
        [Description("The current weather in a city.")]
        public static string GetWeather([Description("The city, e.g. Oslo.")] string city) => $"Light snow, -3 °C in {city}";
    }
}
