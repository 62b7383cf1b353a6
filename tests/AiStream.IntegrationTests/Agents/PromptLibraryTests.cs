using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Agents;

/// <summary>
/// The prompts folder while the gateway runs: edits, new and removed files are picked up without a restart, a broken
/// edit keeps the last good version (and says why in the log), and broken files stop the start with one line each.
/// </summary>
public sealed class PromptLibraryTests : IDisposable
{
    private const string Greeting = """
        name: greet
        description: Greets someone.
        template: Say hello to {{$who}}.
        input_variables:
          - name: who
            is_required: true
        """;

    private readonly string _prompts = Directory.CreateTempSubdirectory("aistream-prompts-").FullName;

    public PromptLibraryTests() => Directory.CreateDirectory(Path.Combine(_prompts, "agents"));

    public void Dispose() => Directory.Delete(_prompts, recursive: true);

    [Fact]
    public async Task ChangedAddedAndRemovedFiles_ArePickedUpWhileRunning_ABrokenEditKeepsTheLastGoodVersion()
    {
        Write("greet.yaml", Greeting);
        await using var gateway = new GatewayFactory(Settings());
        using var http = gateway.Client();
        Assert.Equal(["greet"], await NamesAsync(http, "prompts"));

        // Changed: the new description is listed and the new template renders.
        Write("greet.yaml", Greeting.Replace("Greets someone.", "Greets someone warmly.", StringComparison.Ordinal)
            .Replace("Say hello", "Say a warm hello", StringComparison.Ordinal));
        await EventuallyAsync(async () => (await ListAsync(http, "prompts")).Single()!["description"]!.GetValue<string>() == "Greets someone warmly.");
        Assert.StartsWith("Say a warm hello to Ada.", await RenderedAsync(http, "greet", "Ada"), StringComparison.Ordinal);

        // Added: an agent appears.
        Write("agents/helper.yaml", "instructions: Help.\ntools: [current_time]\n");
        await EventuallyAsync(async () => (await NamesAsync(http, "agents")).SequenceEqual(["helper"]));

        // A broken edit: the last good version stays, and the log says which file and why.
        Write("greet.yaml", "name: greet\ntemplate: [unclosed\n");
        await EventuallyAsync(() => Task.FromResult(gateway.Logs.GetSnapshot().Any(r => r.Message.Contains("greet.yaml", StringComparison.Ordinal)
            && r.Message.Contains("last good version", StringComparison.Ordinal))));
        Assert.StartsWith("Say a warm hello to Ada.", await RenderedAsync(http, "greet", "Ada"), StringComparison.Ordinal);

        // Fixed again: it takes effect.
        Write("greet.yaml", Greeting.Replace("Say hello", "Say hi", StringComparison.Ordinal));
        await EventuallyAsync(async () => (await RenderedAsync(http, "greet", "Ada")).StartsWith("Say hi to Ada.", StringComparison.Ordinal));

        // Removed: gone from the listing, and starting it is a 400 naming it.
        File.Delete(Path.Combine(_prompts, "greet.yaml"));
        await EventuallyAsync(async () => (await NamesAsync(http, "prompts")).Count == 0);
        using var refused = await http.PostAsJsonAsync($"api/sessions/{NewSessionId()}/runs", new JsonObject { ["prompt"] = "greet" });
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var problem = (await refused.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.Equal("Unknown prompt template 'greet' (none are loaded).", problem["detail"]!.GetValue<string>());
    }

    [Fact]
    public async Task BrokenFilesAtStart_AreOneLineEachNamingTheFile_AndExitCode1()
    {
        Write("good.yaml", Greeting);
        Write("bad-yaml.yaml", "name: x\ntemplate: \"unclosed\n");
        Write("agents/bad-tool.yaml", "instructions: Help.\ntools: [launch_rockets]\n");
        var settings = new Dictionary<string, string?> { ["AiStream:Agents:PromptsPath"] = _prompts };

        var (code, output, error) = await GatewayProcess.RunUntilExitAsync(settings, ChildProcesses.FreePort());

        Assert.Equal(1, code);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.All(lines, line => Assert.StartsWith("aistream: ", line, StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("bad-yaml.yaml: invalid YAML at line", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("agents/bad-tool.yaml: tool 'launch_rockets' does not exist (tools: calculate, current_time, read_state, write_state)", StringComparison.Ordinal));
        Assert.Contains("PromptsPath", lines[^1], StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output + error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AMissingFolder_StopsTheStartNamingIt()
    {
        var missing = Path.Combine(_prompts, "nowhere");
        var (code, _, error) = await GatewayProcess.RunUntilExitAsync(
            new Dictionary<string, string?> { ["AiStream:Agents:PromptsPath"] = missing }, ChildProcesses.FreePort());

        Assert.Equal(1, code);
        Assert.Contains($"aistream: {missing}: the prompts folder does not exist", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Listings_NeedAnAuthenticatedCaller_WhenAuthenticationIsOn()
    {
        Write("greet.yaml", Greeting);
        var settings = Tokens.AuthOn(Settings());
        await using var gateway = new GatewayFactory(settings);
        using var anonymous = gateway.Client();
        using var alice = gateway.Client().WithBearer(Tokens.Mint("alice", Tokens.Grants(("x", ["read"]))));

        foreach (var path in new[] { "api/prompts", "api/agents" })
        {
            using var refused = await anonymous.GetAsync(path);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            using var listed = await alice.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, listed.StatusCode);
        }

        var greet = (await ListAsync(alice, "prompts")).Single()!;
        Assert.Equal("who", greet["variables"]![0]!["name"]!.GetValue<string>());
        Assert.True(greet["variables"]![0]!["required"]!.GetValue<bool>());
    }

    private Dictionary<string, string?> Settings()
    {
        var settings = Sim();
        settings["AiStream:Agents:PromptsPath"] = _prompts;
        settings["AiStream:Agents:ReloadDelayMilliseconds"] = "50";
        return settings;
    }

    private void Write(string relative, string text)
    {
        // Written beside and moved into place, as editors and deploy tools do, so the reader never sees half a file.
        var path = Path.Combine(_prompts, relative);
        var temp = path + ".tmp";
        File.WriteAllText(temp, text);
        File.Move(temp, path, overwrite: true);
    }

    private static async Task<JsonArray> ListAsync(HttpClient http, string what) =>
        (await http.GetFromJsonAsync<JsonObject>($"api/{what}"))!["data"]!.AsArray();

    private static async Task<List<string>> NamesAsync(HttpClient http, string what) =>
        [.. (await ListAsync(http, what)).Select(p => p!["name"]!.GetValue<string>())];

    /// <summary>Starts the template in a new session and returns the user message it logged.</summary>
    private static async Task<string> RenderedAsync(HttpClient http, string prompt, string who)
    {
        var session = NewSessionId();
        await AgentTrace.StartAsync(http, session, new JsonObject { ["prompt"] = prompt, ["variables"] = new JsonObject { ["who"] = who } });
        var messages = await EventuallyAsync(async () =>
        {
            using var watcher = await SessionWatcher.OpenAsync(http, session);
            var snapshot = await watcher.NextAsync();
            return snapshot!.Data["messages"]!.AsArray().FirstOrDefault(m => m!["role"]!.GetValue<string>() == "user")?["content"]?.GetValue<string>();
        });
        return messages;
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition)
    {
        await EventuallyAsync(async () => await condition() ? "yes" : null);
    }

    private static async Task<T> EventuallyAsync<T>(Func<Task<T?>> condition)
        where T : class
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            if (await condition() is { } done)
            {
                return done;
            }

            Assert.True(DateTime.UtcNow < deadline, "the change was not picked up within 15 s");
            await Task.Delay(100);
        }
    }
}
