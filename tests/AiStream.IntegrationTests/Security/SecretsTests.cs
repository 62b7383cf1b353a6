using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using static AiStream.IntegrationTests.Infrastructure.Tokens;

namespace AiStream.IntegrationTests.Security;

/// <summary>
/// Provider keys and client tokens are never returned, logged or put in errors: the gateway runs as its own process
/// with every log category at Trace, and neither secret appears in its output or in any answer.
/// </summary>
public sealed class SecretsTests
{
    private const string ProviderKey = "sk-provider-SECRET-3f9a1c0d7e5b";

    [Fact]
    public async Task ProviderKeyAndAccessTokens_AppearInNoAnswerAndNoLogLine_EvenAtTrace()
    {
        await using var upstream = await FakeUpstream.StartAsync(new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        await using var failing = await FakeUpstream.StartAsync(new UpstreamScript.Fail(401, Message: "Incorrect API key provided"));
        var settings = AuthOn(Settings.Compatible(upstream.BaseUrl));
        settings["AiStream:Providers:up:ApiKey"] = ProviderKey;
        settings["AiStream:Providers:bad:Type"] = "OpenAICompatible";
        settings["AiStream:Providers:bad:Endpoint"] = failing.BaseUrl;
        settings["AiStream:Providers:bad:ApiKey"] = ProviderKey;
        settings["AiStream:Models:gpt-bad:Provider"] = "bad";
        settings["AiStream:Models:gpt-bad:UpstreamModel"] = "gpt-bad";
        settings["Logging:LogLevel:Default"] = "Trace";
        settings["Logging:LogLevel:Microsoft"] = "Trace";
        settings["Logging:LogLevel:Microsoft.AspNetCore"] = "Trace";
        settings["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Trace";
        await using var gateway = await GatewayProcess.StartAsync(settings);
        var token = Mint("alice", Grants(("*", ["admin"])), "completions");
        using var http = gateway.CreateClient().WithBearer(token);
        var answers = new List<string>();

        foreach (var model in new[] { "gpt-test", "gpt-bad" })
        {
            using var completion = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
            {
                ["model"] = model,
                ["stream"] = true,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
            });
            answers.Add(await completion.Content.ReadAsStringAsync());
        }

        answers.Add(await http.GetStringAsync("v1/models"));
        using (var anonymous = gateway.CreateClient())
        {
            answers.Add(await anonymous.GetStringAsync("readyz").ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : "", TaskScheduler.Default));
            using var watch = await anonymous.GetAsync($"api/sessions/s-secret/events?access_token={token}", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, watch.StatusCode);
            using var refused = await anonymous.GetAsync($"api/sessions/s-secret/events?access_token={token}x", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            answers.Add(await refused.Content.ReadAsStringAsync());
        }

        Assert.Equal(2, upstream.RequestCount + failing.RequestCount);
        Assert.Equal("Bearer " + ProviderKey, upstream.Requests.Single().Headers.Authorization.ToString());
        await Task.Delay(500); // let the last log lines reach the output
        var output = gateway.Output;
        Assert.Contains("trce:", output, StringComparison.Ordinal); // Trace really is on
        var signature = token[(token.LastIndexOf('.') + 1)..];
        foreach (var (what, text) in answers.Select(a => ("an answer", a)).Append(("the log", output)))
        {
            Assert.DoesNotContain(ProviderKey, text, StringComparison.Ordinal);
            Assert.DoesNotContain("SECRET", text, StringComparison.Ordinal);
            Assert.False(text.Contains(signature, StringComparison.Ordinal), $"{what} contains the access token: " + string.Join("\n", text.Split('\n').Where(l => l.Contains(signature, StringComparison.Ordinal))));
        }
    }
}
