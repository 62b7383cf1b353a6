using AiStream.Gateway.Api;
using AiStream.Gateway.Providers;

namespace AiStream.Gateway.Completions;

/// <summary>The OpenAI-compatible surface: <c>/v1/chat/completions</c> and <c>/v1/models</c>.</summary>
internal static class CompletionsEndpoints
{
    /// <summary>Maps <c>/v1</c>; returns the group so the host can attach its authorization policy.</summary>
    public static RouteGroupBuilder MapCompletions(this IEndpointRouteBuilder app)
    {
        var v1 = app.MapGroup("/v1").WithTags("OpenAI-compatible");
        v1.MapPost("/chat/completions", (HttpContext context, CompletionProxy proxy) => proxy.HandleAsync(context));
        v1.MapGet("/models", (ModelCatalog catalog, StartTime start) =>
            TypedResults.Json(new ModelList("list", catalog.All.Select(r => Entry(r, start)).ToList()), CompletionsJsonContext.Default.ModelList));
        v1.MapGet("/models/{id}", (string id, ModelCatalog catalog, StartTime start) =>
            catalog.TryResolve(id, out var route)
                ? TypedResults.Json(Entry(route, start), CompletionsJsonContext.Default.ModelEntry)
                : ApiError.ModelNotFound(id).ToResult());
        return v1;
    }

    private static ModelEntry Entry(ModelRoute route, StartTime start) =>
        new(route.Name, "model", start.UnixSeconds, "aistream:" + route.ProviderName);
}

/// <summary>When this gateway process started; the <c>created</c> of every listed model.</summary>
internal sealed class StartTime(TimeProvider time)
{
    public long UnixSeconds { get; } = time.GetUtcNow().ToUnixTimeSeconds();
}
