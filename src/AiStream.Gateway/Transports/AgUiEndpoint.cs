using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Security;
using AiStream.Gateway.Sessions;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Transports;

/// <summary>
/// <c>POST /agui</c>: an AG-UI agent endpoint. Takes <c>RunAgentInput</c> (<c>threadId</c> is the session id), starts a
/// run in that session and streams the run's events in the AG-UI SSE encoding until it finishes. Everyone watching
/// the session sees the same run.
/// </summary>
internal static class AgUiEndpoint
{
    public static IEndpointRouteBuilder MapAgUi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/agui", RunAsync).WithTags("AG-UI");
        return app;
    }

    private static async Task<IResult> RunAsync(HttpContext context, ISessionStore store, RunManager runs, CallerLimits limits, IOptions<SessionsOptions> sessionOptions)
    {
        var cancellationToken = context.RequestAborted;
        var (start, invalid) = await SessionsEndpoints.ReadRunStartAsync(context, 4 * 1024 * 1024, "threadId", "RunAgentInput", cancellationToken);
        if (start is not { Body: var input, SessionId: var sessionId })
        {
            return invalid!;
        }

        if (await limits.TryStartRunAsync(context, cancellationToken) is { } retry)
        {
            return LimitsHosting.TooMany(context, "Too many runs started (AiStream:Limits:RunsPerMinute).", "too_many_runs", retry);
        }

        var runId = input["runId"] is JsonValue run && run.GetValueKind() == JsonValueKind.String && run.GetValue<string>().Length > 0
            ? run.GetValue<string>()
            : "run_" + Guid.NewGuid().ToString("N")[..20];
        // The gateway's own run fields (model, prompt and variables, agent) travel in AG-UI's forwardedProps.
        var (forwarded, forwardedError) = SessionsEndpoints.RunBody(input["forwardedProps"] as JsonObject ?? []);
        if (forwardedError is not null)
        {
            return (forwardedError with { Param = "forwardedProps." + forwardedError.Param }).ToResult();
        }

        // Subscribe to this run's events before it starts, so RUN_STARTED is the first thing streamed.
        var options = sessionOptions.Value;
        var subscriber = new Subscriber(options.CoalesceThreshold, options.SubscriberHardLimit).ForRun(runId);
        await store.SubscribeAsync(sessionId, null, subscriber, cancellationToken);
        try
        {
            var request = new RunRequest(input["messages"], forwarded!.Model, forwarded.Prompt, runId, input["tools"], input["context"], input["state"] as JsonObject)
            {
                Variables = forwarded.Variables,
                Agent = forwarded.Agent,
                Owner = CallerGrants.Of(context).Subject,
                Caller = CallerGrants.Of(context),
                FallbackBudgetKey = "ip:" + context.Connection.RemoteIpAddress,
            };
            var (_, error) = await runs.StartAsync(sessionId, request, cancellationToken);
            if (error is not null)
            {
                return error.ToResult();
            }

            var response = context.Response;
            response.ContentType = "text/event-stream; charset=utf-8";
            response.Headers.CacheControl = "no-cache";
            response.Headers["X-Accel-Buffering"] = "no";
            context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
            using var registration = cancellationToken.Register(static s => ((Subscriber)s!).Close(), subscriber);
            var writer = response.BodyWriter;
            var finished = false;
            await SessionEventStream.WriteAsync(writer, [], subscriber, (w, e) =>
            {
                w.Write(AgUiStrict(e).SseFrame);
                return finished = e.Type is AgUi.RunFinished or AgUi.RunError;
            }, cancellationToken);

            if (!finished && subscriber.CloseReason is { } reason && !cancellationToken.IsCancellationRequested)
            {
                // Fell too far behind: say why before closing; the run's events stay in the session log.
                SessionFrames.WriteComment(writer, "disconnected: " + reason);
                await writer.FlushAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The caller left; the run goes on for everyone else watching the session.
        }
        finally
        {
            store.Unsubscribe(sessionId, subscriber);
        }

        return Results.Empty;
    }

    /// <summary>
    /// The event as the AG-UI schema has it: <c>@ag-ui/client</c> strips (and warns about) fields it does not know,
    /// so the gateway's extras go (the position stays on the SSE <c>id:</c> line).
    /// </summary>
    private static SessionEvent AgUiStrict(SessionEvent e)
    {
        var body = e.ToJsonObject();
        body.Remove("seq");
        switch (e.Type)
        {
            case AgUi.RunFinished when body["outcome"] is JsonObject outcome:
                outcome.Remove("reason");
                break;
            case AgUi.RunError:
                body.Remove("runId");
                break;
            case AgUi.ToolCallResult:
                body.Remove("error"); // a failed tool's result still says so: its content starts with "Error: "
                break;
        }

        return new SessionEvent
        {
            Seq = e.Seq,
            Type = e.Type,
            Timestamp = e.Timestamp,
            Json = JsonSerializer.SerializeToUtf8Bytes(body, SessionsJsonContext.Default.JsonObject),
        };
    }
}
