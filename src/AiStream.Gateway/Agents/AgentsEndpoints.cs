using System.Text.Json.Nodes;

namespace AiStream.Gateway.Agents;

/// <summary><c>GET /api/prompts</c> and <c>GET /api/agents</c>: what is loaded, with each template's variables and each agent's tools.</summary>
internal static class AgentsEndpoints
{
    public static IEndpointRouteBuilder MapAgents(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api").WithTags("Agents");
        group.MapGet("/prompts", (PromptLibrary library) => Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray([.. library.Prompts.Select(p => (JsonNode)Describe(p))]),
        }));
        group.MapGet("/agents", (PromptLibrary library, AgentToolbox toolbox) => Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray([.. library.Agents.Select(a => Describe(a, toolbox))]),
            ["tools"] = new JsonArray([.. toolbox.Names.Select(n => (JsonNode)Tool(n, toolbox))]),
        }));
        return app;
    }

    private static JsonObject Describe(PromptDefinition prompt)
    {
        var settings = prompt.Config.DefaultExecutionSettings;
        return new JsonObject
        {
            ["name"] = prompt.Name,
            ["description"] = prompt.Description,
            ["model"] = settings?.ModelId,
            ["variables"] = new JsonArray([.. prompt.Config.InputVariables.Select(v => (JsonNode)new JsonObject
            {
                ["name"] = v.Name,
                ["description"] = v.Description,
                ["required"] = v.IsRequired && v.Default is null,
                ["default"] = v.Default is null ? null : JsonValue.Create(Convert.ToString(v.Default, System.Globalization.CultureInfo.InvariantCulture)),
            })]),
        };
    }

    private static JsonObject Describe(AgentDefinition agent, AgentToolbox toolbox) => new JsonObject
    {
        ["name"] = agent.Name,
        ["description"] = agent.Description,
        ["model"] = agent.Model,
        ["maxSteps"] = agent.MaxSteps,
        ["tools"] = new JsonArray([.. agent.Tools.Select(t => (JsonNode)Tool(t, toolbox))]),
    };

    private static JsonObject Tool(string name, AgentToolbox toolbox) => new() { ["name"] = name, ["description"] = toolbox.Describe(name) };

    private static Microsoft.AspNetCore.Http.HttpResults.ContentHttpResult Json(JsonObject body) => TypedResults.Text(body.ToJsonString(), "application/json", System.Text.Encoding.UTF8);
}
