using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace AiStream.Gateway.Api;

/// <summary>Problems written by the framework itself (routing's 404 and 405) carry OpenAI's error object like every other error.</summary>
internal static class ApiProblems
{
    public static void AddOpenAIError(ProblemDetailsContext context)
    {
        if (context.ProblemDetails.Extensions.ContainsKey("error"))
        {
            return;
        }

        var status = context.ProblemDetails.Status ?? context.HttpContext.Response.StatusCode;
        var code = status switch
        {
            StatusCodes.Status404NotFound => "not_found",
            StatusCodes.Status405MethodNotAllowed => "method_not_allowed",
            _ => "http_" + status.ToString(CultureInfo.InvariantCulture),
        };
        context.ProblemDetails.Extensions["error"] = new JsonObject
        {
            ["message"] = context.ProblemDetails.Title ?? "Error",
            ["type"] = "invalid_request_error",
            ["code"] = code,
        };
    }
}
