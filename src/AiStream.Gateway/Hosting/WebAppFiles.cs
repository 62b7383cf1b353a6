using Microsoft.Net.Http.Headers;

namespace AiStream.Gateway.Hosting;

/// <summary>
/// The web app's files (wwwroot) with the headers a page that renders model output needs: a Content-Security-Policy
/// that allows only the gateway's own scripts, styles and connections (a model's answer, or anything a participant
/// publishes, can never run script even if it slipped past the page's sanitiser), no MIME sniffing, no referrer, and
/// no framing by other sites.
/// </summary>
internal static class WebAppFiles
{
    public const string ContentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

    public static IApplicationBuilder UseAiStreamWebApp(this IApplicationBuilder app)
    {
        app.UseDefaultFiles();
        return app.UseStaticFiles(new StaticFileOptions
        {
            OnPrepareResponse = context =>
            {
                var headers = context.Context.Response.Headers;
                headers[HeaderNames.XContentTypeOptions] = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
                if (context.File.Name.EndsWith(".html", StringComparison.OrdinalIgnoreCase))
                {
                    headers[HeaderNames.ContentSecurityPolicy] = ContentSecurityPolicy;
                    headers[HeaderNames.CacheControl] = "no-cache";
                }
            },
        });
    }
}
