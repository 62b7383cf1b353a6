using System.Text.Json;
using AiStream.Gateway.Api;
using AiStream.Gateway.Diagnostics;
using AiStream.Gateway.Limits;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;
using AiStream.Gateway.Security;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using Polly.CircuitBreaker;

namespace AiStream.Gateway.Completions;

/// <summary>
/// Serves <c>/v1/chat/completions</c>. Before the first token it may retry, fall back along the model's
/// <c>Fallbacks</c> and send heartbeats; once a chunk has reached the client it only relays, and a failure ends the
/// stream with an explicit error event and <c>[DONE]</c>.
/// </summary>
internal sealed partial class CompletionProxy(
    ModelCatalog catalog,
    ChatClientFactory clients,
    UpstreamResilience resilience,
    IHttpClientFactory httpClients,
    TokenCounter tokens,
    TokenBudget budget,
    AiStreamMetrics metrics,
    IOptions<CompletionsOptions> options,
    TimeProvider time,
    ILogger<CompletionProxy> logger)
{
    private readonly CompletionsOptions _options = options.Value;

    public async Task<IResult> HandleAsync(HttpContext context)
    {
        var cancellationToken = context.RequestAborted;
        var (node, readError) = await ClientJson.ReadAsync(context.Request, _options.MaxRequestBodyBytes, cancellationToken).ConfigureAwait(false);
        if (readError is not null)
        {
            return readError.ToResult();
        }

        var parsed = CompletionRequest.Parse(node, catalog.DefaultModel, out var error);
        if (parsed is null)
        {
            return error!.ToResult();
        }

        if (!catalog.TryResolve(parsed.Model, out var route))
        {
            return ApiError.ModelNotFound(parsed.Model).ToResult();
        }

        // A daily budget is checked before the upstream is called: the request that would cross it never reaches it.
        var caller = CallerGrants.Of(context);
        if (budget.Applies(caller))
        {
            var needed = tokens.CountPrompt(parsed.MessagesForCounting(), parsed.ToolsJson(), cancellationToken) + (parsed.MaxOutputTokens ?? budget.DefaultMaxTokens);
            var (reservation, retryAfter) = await budget.TryReserveAsync(caller, "ip:" + context.Connection.RemoteIpAddress, needed, cancellationToken).ConfigureAwait(false);
            if (reservation is null)
            {
                return LimitsHosting.TooMany(context, $"This request needs up to {needed} tokens, more than is left of today's budget (AiStream:Limits:DailyTokens).",
                    "daily_token_budget_exceeded", retryAfter);
            }

            parsed.Reservation = reservation;
        }

        var candidates = catalog.Candidates(route);
        try
        {
            return parsed.Stream
                ? await StreamAsync(context, parsed, candidates, cancellationToken).ConfigureAwait(false)
                : await CompleteAsync(context, parsed, candidates, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Usage settles the reservation; a request that never reached a model used nothing.
            parsed.Reservation?.Settle(0);
        }
    }

    private async Task<IResult> StreamAsync(HttpContext context, CompletionRequest request, IReadOnlyList<ModelRoute> candidates, CancellationToken cancellationToken)
    {
        var response = context.Response;
        var writer = response.BodyWriter;
        var startedAt = time.GetTimestamp();
        var headersSent = false;
        var openTask = OpenStreamAsync(request, candidates, cancellationToken);
        UpstreamStream stream;
        ModelRoute route;
        try
        {
            var wait = TimeSpan.FromSeconds(_options.HeartbeatDelaySeconds);
            while (!openTask.IsCompleted)
            {
                try
                {
                    await openTask.WaitAsync(wait, time, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Still waiting for a first token: commit to a 200 and keep idle-limited proxies from cutting us off.
                    if (!headersSent)
                    {
                        StartEventStream(context, null);
                        headersSent = true;
                    }

                    SseWriter.WriteHeartbeat(writer);
                    await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                    wait = TimeSpan.FromSeconds(_options.HeartbeatIntervalSeconds);
                }
            }

            (stream, route) = await openTask.ConfigureAwait(false);
        }
        catch (UpstreamException ex)
        {
            metrics.RecordCompletion(request.Model, "upstream_error");
            if (!headersSent)
            {
                return FailureResult(ex);
            }

            await WriteStreamErrorAsync(writer, ex).ConfigureAwait(false);
            return Results.Empty;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Log.ClientLeftBeforeFirstToken(logger, request.Model);
            metrics.RecordCompletion(request.Model, "client_cancelled");
            // The open is cancelled with the same token; whatever it ends with, release it.
            _ = openTask.ContinueWith(static t =>
            {
                if (t.IsCompletedSuccessfully)
                {
                    return t.Result.Stream.DisposeAsync().AsTask();
                }

                _ = t.Exception; // observed: the client is gone, there is no one to tell
                return Task.CompletedTask;
            }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            return Results.Empty;
        }

        await using (stream.ConfigureAwait(false))
        {
            using var tally = new UsageTally();
            if (!headersSent)
            {
                StartEventStream(context, route);
            }

            var outcome = "completed";
            var first = true;
            var unflushed = false;
            var reading = false;
            ValueTask<bool> next = default;
            try
            {
                next = stream.ReadAsync(route.IdleTimeout);
                reading = true;
                while (true)
                {
                    // Flush only when the upstream has nothing more in hand: a burst of chunks that arrived together
                    // leaves in one write, and a paced chunk still leaves the moment it came.
                    if (unflushed && !next.IsCompleted)
                    {
                        unflushed = false;
                        await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                        if (first)
                        {
                            first = false;
                            metrics.RecordTimeToFirstToken(route.Name, time.GetElapsedTime(startedAt));
                        }
                    }

                    reading = false;
                    if (!await next.ConfigureAwait(false))
                    {
                        break;
                    }

                    var payload = stream.Current.Span;
                    var flags = tally.Inspect(payload);
                    if (request.ClientWantsUsage || (flags & (ChunkFlags.HasUsage | ChunkFlags.EmptyChoices)) != (ChunkFlags.HasUsage | ChunkFlags.EmptyChoices))
                    {
                        // (Otherwise the usage chunk exists only because the gateway asked for it.)
                        SseWriter.WriteData(writer, payload);
                        unflushed = true;
                    }

                    cancellationToken.ThrowIfCancellationRequested();
                    next = stream.ReadAsync(route.IdleTimeout);
                    reading = true;
                }

                if (!stream.SawDone && !tally.SawFinish && !tally.SawError)
                {
                    throw new UpstreamException(UpstreamFailureKind.Truncated, "The upstream stream ended before the answer was complete.");
                }

                if (tally.SawError)
                {
                    outcome = "upstream_error";
                }

                SseWriter.WriteDone(writer);
                await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (UpstreamException ex)
            {
                outcome = "upstream_error";
                metrics.RecordUpstreamFailure(route.ProviderName, ex.Code);
                Log.MidStreamFailure(logger, route.Name, ex.Code, ex.Message);
                await WriteStreamErrorAsync(writer, ex).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                outcome = "client_cancelled";
                Log.ClientLeftMidStream(logger, route.Name);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                // A bug of ours must still end the stream explicitly rather than cut it.
                outcome = "gateway_error";
                Log.RelayFailed(logger, route.Name, ex);
                await WriteStreamErrorAsync(writer, new UpstreamException(UpstreamFailureKind.Truncated, "The gateway failed while relaying the stream.")).ConfigureAwait(false);
            }
            finally
            {
                if (reading)
                {
                    // A flush failed while the next chunk was being read: stop that read before the stream goes.
                    await stream.AbandonAsync(next).ConfigureAwait(false);
                }

                await RecordUsageAsync(request, route, tally).ConfigureAwait(false);
                metrics.RecordCompletion(route.Name, outcome);
            }
        }

        return Results.Empty;
    }

    private static void StartEventStream(HttpContext context, ModelRoute? route)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        if (route is not null)
        {
            response.Headers["X-AiStream-Model"] = route.Name;
            response.Headers["X-AiStream-Provider"] = route.ProviderName;
        }

        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    private static async Task WriteStreamErrorAsync(System.IO.Pipelines.PipeWriter writer, UpstreamException ex)
    {
        var body = new StreamErrorBody(new OpenAIErrorObject(ex.Message, "upstream_error", null, ex.Code));
        SseWriter.WriteData(writer, JsonSerializer.SerializeToUtf8Bytes(body, ApiJsonContext.Default.StreamErrorBody));
        SseWriter.WriteDone(writer);
        try
        {
            await writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception flushError) when (flushError is IOException or OperationCanceledException or InvalidOperationException)
        {
            // The client is gone as well; nothing more to tell it.
        }
    }

    /// <summary>Tries each candidate in turn, each through its provider's retry and circuit breaker.</summary>
    private async Task<(UpstreamStream Stream, ModelRoute Route)> OpenStreamAsync(
        CompletionRequest request, IReadOnlyList<ModelRoute> candidates, CancellationToken cancellationToken)
    {
        return await WithFallbacksAsync(request, candidates, async (route, ct) =>
        {
            var body = route.IsSimulated ? null : request.UpstreamBody(route);
            var stream = await resilience.For(route.ProviderName).ExecuteAsync(
                static async (state, _) => await state.Self.OpenOnceAsync(state.Request, state.Route, state.Body, state.Token).ConfigureAwait(false),
                (Self: this, Request: request, Route: route, Body: body, Token: ct),
                ct).ConfigureAwait(false);
            return (stream, route);
        }, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<UpstreamStream> OpenOnceAsync(CompletionRequest request, ModelRoute route, byte[]? body, CancellationToken cancellationToken)
    {
        UpstreamStream stream;
        if (route.IsSimulated)
        {
            var (messages, chatOptions) = request.ToChat();
            var renderer = new ChunkRenderer(NewCompletionId(), route.UpstreamModel, time.GetUtcNow().ToUnixTimeSeconds());
            stream = new SimulatedUpstreamStream(clients.CreateSimulated(route), messages, chatOptions, renderer, time, cancellationToken);
        }
        else
        {
            stream = new HttpUpstreamStream(httpClients.CreateClient(ProvidersHosting.UpstreamHttpClient), route, body!, time, cancellationToken);
        }

        try
        {
            await stream.OpenAsync(route.TimeToFirstTokenTimeout).ConfigureAwait(false);
            return stream;
        }
        catch (Exception ex)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            if (ex is UpstreamException upstream)
            {
                metrics.RecordUpstreamFailure(route.ProviderName, upstream.Code);
                Log.AttemptFailed(logger, route.Name, route.ProviderName, upstream.Code, upstream.Message);
            }

            throw;
        }
    }

    private async Task<T> WithFallbacksAsync<T>(
        CompletionRequest request, IReadOnlyList<ModelRoute> candidates, Func<ModelRoute, CancellationToken, Task<T>> attempt, CancellationToken cancellationToken)
    {
        UpstreamException? last = null;
        for (var i = 0; i < candidates.Count; i++)
        {
            var route = candidates[i];
            try
            {
                return await attempt(route, cancellationToken).ConfigureAwait(false);
            }
            catch (BrokenCircuitException ex)
            {
                last = new UpstreamException(UpstreamFailureKind.CircuitOpen,
                    $"Provider '{route.ProviderName}' is being skipped: its circuit is open after repeated failures.", inner: ex);
            }
            catch (UpstreamException ex) when (!ex.IsClientError)
            {
                last = ex;
            }

            if (i + 1 < candidates.Count)
            {
                Log.FallingBack(logger, request.Model, route.Name, candidates[i + 1].Name, last.Code);
            }
        }

        var tried = string.Join(", ", candidates.Select(c => c.Name));
        throw new UpstreamException(last!.Kind, $"Model '{request.Model}' failed on every candidate ({tried}). Last failure: {last.Message}",
            last.Status, last.RetryAfter, last.Body, last.ContentType, last);
    }

    private UpstreamException Failed(ModelRoute route, UpstreamException ex)
    {
        metrics.RecordUpstreamFailure(route.ProviderName, ex.Code);
        Log.AttemptFailed(logger, route.Name, route.ProviderName, ex.Code, ex.Message);
        return ex;
    }

    /// <summary>The client's error: a client error from upstream keeps its status and message; the rest are 502/504.</summary>
    private static IResult FailureResult(UpstreamException ex)
    {
        if (ex.IsClientError || (ex.InnerException is UpstreamException { IsClientError: true }))
        {
            var upstream = ex.InnerException as UpstreamException ?? ex;
            var (message, type, param, code) = ReadUpstreamError(upstream.Body);
            return new ApiError(upstream.Status!.Value, message ?? upstream.Message, type ?? "invalid_request_error", code, param).ToResult();
        }

        return new ApiError(ex.GatewayStatus, ex.Message, "upstream_error", ex.Code) { RetryAfter = ex.Status == 429 ? ex.RetryAfter : null }.ToResult();
    }

    private static (string? Message, string? Type, string? Param, string? Code) ReadUpstreamError(byte[]? body)
    {
        if (body is not { Length: > 0 })
        {
            return default;
        }

        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("error", out var error)
                && error.ValueKind == JsonValueKind.Object)
            {
                return (Text(error, "message"), Text(error, "type"), Text(error, "param"), Text(error, "code"));
            }
        }
        catch (JsonException)
        {
        }

        return (System.Text.Encoding.UTF8.GetString(body.AsSpan(0, Math.Min(body.Length, 2048))), null, null, null);

        static string? Text(JsonElement element, string name) =>
            element.TryGetProperty(name, out var value) ? value.ValueKind == JsonValueKind.String ? value.GetString() : value.ValueKind == JsonValueKind.Null ? null : value.GetRawText() : null;
    }

    /// <summary>
    /// Records usage; when the upstream reported none, the estimate (tokenizing the prompt and the answer, which for a
    /// long conversation takes milliseconds) runs on the thread pool rather than on a socket event thread.
    /// </summary>
    private Task RecordUsageAsync(CompletionRequest request, ModelRoute route, UsageTally tally)
    {
        if (tally.PromptTokens is not null && tally.CompletionTokens is not null)
        {
            RecordUsage(request, route, tally);
            return Task.CompletedTask;
        }

        return Task.Run(() => RecordUsage(request, route, tally), CancellationToken.None);
    }

    private void RecordUsage(CompletionRequest request, ModelRoute route, UsageTally tally)
    {
        var estimated = tally.PromptTokens is null || tally.CompletionTokens is null;
        var prompt = tally.PromptTokens ?? tokens.CountPrompt(request.MessagesForCounting(), request.ToolsJson());
        var completion = tally.CompletionTokens ?? tokens.Count(tally.GeneratedText);
        metrics.RecordUsage(new UsageRecord(route.Name, route.ProviderName, prompt, completion, estimated));
        request.Reservation?.Settle(prompt + completion);
        Log.Usage(logger, route.Name, route.ProviderName, prompt, completion, estimated);
    }

    private static string NewCompletionId() => "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];

}
