using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;

namespace AiStream.Gateway.Completions;

/// <summary>The <c>stream:false</c> path: one buffered answer, with the same retry and fallback.</summary>
internal sealed partial class CompletionProxy
{
    private async Task<IResult> CompleteAsync(HttpContext context, CompletionRequest request, IReadOnlyList<ModelRoute> candidates, CancellationToken cancellationToken)
    {
        byte[] body;
        ModelRoute route;
        try
        {
            (body, route) = await WithFallbacksAsync(request, candidates, async (candidate, ct) =>
            {
                var upstreamBody = candidate.IsSimulated ? null : request.UpstreamBody(candidate);
                var result = await resilience.For(candidate.ProviderName).ExecuteAsync(
                    static async (state, _) => await state.Self.CompleteOnceAsync(state.Request, state.Route, state.Body, state.Token).ConfigureAwait(false),
                    (Self: this, Request: request, Route: candidate, Body: upstreamBody, Token: ct),
                    ct).ConfigureAwait(false);
                return (result, candidate);
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (UpstreamException ex)
        {
            metrics.RecordCompletion(request.Model, "upstream_error");
            return FailureResult(ex);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Log.ClientLeftBeforeFirstToken(logger, request.Model);
            metrics.RecordCompletion(request.Model, "client_cancelled");
            return Results.Empty;
        }

        using (var tally = new UsageTally())
        {
            tally.Inspect(body);
            await RecordUsageAsync(request, route, tally).ConfigureAwait(false);
        }

        metrics.RecordCompletion(route.Name, "completed");
        context.Response.Headers["X-AiStream-Model"] = route.Name;
        context.Response.Headers["X-AiStream-Provider"] = route.ProviderName;
        return TypedResults.Bytes(body, "application/json");
    }

    private async ValueTask<byte[]> CompleteOnceAsync(CompletionRequest request, ModelRoute route, byte[]? body, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(route.RequestTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            if (route.IsSimulated)
            {
                var (messages, chatOptions) = request.ToChat();
                var renderer = new ChunkRenderer(NewCompletionId(), route.UpstreamModel, time.GetUtcNow().ToUnixTimeSeconds());
                var answer = await clients.CreateSimulated(route).GetResponseAsync(messages, chatOptions, linked.Token).ConfigureAwait(false);
                return renderer.RenderCompletion(answer);
            }

            using var upstreamRequest = UpstreamRequests.Create(route, body!);
            using var response = await httpClients.CreateClient(ProvidersHosting.UpstreamHttpClient)
                .SendAsync(upstreamRequest, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw await UpstreamRequests.FailureAsync(response, time, linked.Token).ConfigureAwait(false);
            }

            return await response.Content.ReadAsByteArrayAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw Failed(route, new UpstreamException(UpstreamFailureKind.TimeToFirstToken,
                $"No answer from the upstream within {route.RequestTimeout.TotalSeconds:0.###} s.", inner: ex));
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException)
        {
            throw Failed(route, new UpstreamException(UpstreamFailureKind.Connection, $"The upstream connection failed: {ex.Message}", inner: ex));
        }
        catch (UpstreamException ex)
        {
            throw Failed(route, ex);
        }
    }
}
