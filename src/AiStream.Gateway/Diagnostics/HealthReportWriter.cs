using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace AiStream.Gateway.Diagnostics;

/// <summary>
/// The body of <c>/readyz</c>: the overall status and each check's status and description, so an operator sees why a
/// node is not ready and whether authentication is on. No exception text: it could name hosts or secrets.
/// </summary>
internal static class HealthReportWriter
{
    public static async Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        await using var json = new Utf8JsonWriter(context.Response.Body);
        json.WriteStartObject();
        json.WriteString("status", report.Status.ToString());
        json.WriteStartObject("checks");
        foreach (var (name, entry) in report.Entries)
        {
            json.WriteStartObject(name);
            json.WriteString("status", entry.Status.ToString());
            if (entry.Description is { } description)
            {
                json.WriteString("description", description);
            }

            json.WriteEndObject();
        }

        json.WriteEndObject();
        json.WriteEndObject();
        await json.FlushAsync(context.RequestAborted);
    }
}
