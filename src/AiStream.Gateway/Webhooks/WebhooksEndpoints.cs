using AiStream.Gateway.Security;

namespace AiStream.Gateway.Webhooks;

/// <summary><c>GET /api/webhooks/failures</c>: deliveries that kept failing, newest first (admin).</summary>
internal static class WebhooksEndpoints
{
    public static IEndpointRouteBuilder MapWebhooks(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/webhooks/failures", async (HttpContext context, IWebhookQueue queue, CancellationToken cancellationToken) =>
            !CallerGrants.Of(context).Admin
                ? SessionAccess.Forbidden("Listing webhook failures needs the admin scope.", "admin_required")
                : TypedResults.Json(new FailureList("list", await queue.FailuresAsync(cancellationToken)), WebhooksJsonContext.Default.FailureList))
            .WithTags("Webhooks");
        return app;
    }
}
