using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Completions;

public sealed class ModelsAndHealthTests
{
    [Fact]
    public async Task GetModels_ListsEveryConfiguredModelInOpenAIShape()
    {
        await using var gateway = new GatewayFactory(Settings.Compatible("http://127.0.0.1:9/v1"));
        using var http = gateway.Http();

        var list = await http.GetFromJsonAsync<JsonObject>("v1/models");

        Assert.Equal("list", list!["object"]!.GetValue<string>());
        var ids = list["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>()).ToList();
        Assert.Equal(["gpt-test", "sim"], ids);
        Assert.All(list["data"]!.AsArray(), m => Assert.Equal("model", m!["object"]!.GetValue<string>()));
    }

    [Fact]
    public async Task GetModel_KnownAndUnknown_Returns200And404()
    {
        await using var gateway = new GatewayFactory();
        using var http = gateway.Http();

        using var known = await http.GetAsync("v1/models/sim");
        using var unknown = await http.GetAsync("v1/models/gpt-9");

        Assert.Equal(HttpStatusCode.OK, known.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("model_not_found", (await unknown.Content.ReadFromJsonAsync<JsonObject>())!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task Health_LiveAtOnce_ReadyOnceTheTokenizerIsLoaded()
    {
        await using var gateway = new GatewayFactory();
        using var http = gateway.Http();

        using var live = await http.GetAsync("healthz");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);

        var ready = HttpStatusCode.ServiceUnavailable;
        for (var i = 0; i < 100 && ready != HttpStatusCode.OK; i++)
        {
            using var response = await http.GetAsync("readyz");
            ready = response.StatusCode;
            if (ready != HttpStatusCode.OK)
            {
                await Task.Delay(100);
            }
        }

        Assert.Equal(HttpStatusCode.OK, ready);
    }
}
