using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;
using Microsoft.Extensions.AI;
using Polly.CircuitBreaker;

namespace AiStream.Gateway.Sessions;

/// <summary>Opening a run's generation: resilience before the first token, and the conversation as the model sees it.</summary>
internal sealed partial class RunManager
{
    /// <summary>
    /// Opens the generation and waits for its first update, through the provider's retry and circuit breaker and then
    /// along the model's fallbacks, exactly like the /v1 relay: nothing has been logged for the run's answer yet, so
    /// nothing can be duplicated. After the first update no attempt is repeated.
    /// </summary>
    private async Task<(IAsyncEnumerator<ChatResponseUpdate> Updates, ModelRoute Route)> OpenAsync(
        ActiveRun run, List<ChatMessage> chat, ChatOptions chatOptions, CancellationToken cancellationToken)
    {
        UpstreamException? last = null;
        foreach (var route in catalog.Candidates(run.Route))
        {
            try
            {
                var updates = await resilience.For(route.ProviderName).ExecuteAsync(
                    static async (s, _) => await s.Self.OpenOnceAsync(s.Route, s.Chat, s.Options, s.Token).ConfigureAwait(false),
                    (Self: this, Route: route, Chat: chat, Options: chatOptions, Token: cancellationToken),
                    cancellationToken).ConfigureAwait(false);
                return (updates, route);
            }
            catch (BrokenCircuitException ex)
            {
                last = new UpstreamException(UpstreamFailureKind.CircuitOpen, $"Provider '{route.ProviderName}' is being skipped: its circuit is open.", inner: ex);
            }
            catch (UpstreamException ex) when (!ex.IsClientError)
            {
                last = ex;
            }

            Log.RunFallingBack(logger, run.SessionId, run.RunId, route.Name, last.Code);
        }

        throw last!;
    }

    private async ValueTask<IAsyncEnumerator<ChatResponseUpdate>> OpenOnceAsync(
        ModelRoute route, List<ChatMessage> chat, ChatOptions chatOptions, CancellationToken cancellationToken)
    {
        var watchdog = new CancellationTokenSource(route.TimeToFirstTokenTimeout, time);
        var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, watchdog.Token);
        var updates = clients.Get(route.Name).GetStreamingResponseAsync(chat, chatOptions, linked.Token).GetAsyncEnumerator(linked.Token);
        try
        {
            if (!await updates.MoveNextAsync().ConfigureAwait(false))
            {
                throw new UpstreamException(UpstreamFailureKind.Truncated, "The model ended its answer before sending anything.");
            }

            watchdog.CancelAfter(Timeout.InfiniteTimeSpan);
            return new OwnedUpdates(updates, watchdog, linked);
        }
        catch (Exception ex)
        {
            await updates.DisposeAsync().ConfigureAwait(false);
            linked.Dispose();
            watchdog.Dispose();
            throw ex switch
            {
                OperationCanceledException when watchdog.IsCancellationRequested && !cancellationToken.IsCancellationRequested =>
                    new UpstreamException(UpstreamFailureKind.TimeToFirstToken, $"No first token within {route.TimeToFirstTokenTimeout.TotalSeconds:0.###} s.", inner: ex),
                System.ClientModel.ClientResultException { Status: > 0 } result =>
                    new UpstreamException(UpstreamFailureKind.Status, $"The upstream answered {result.Status}: {result.Message}", result.Status, inner: ex),
                System.ClientModel.ClientResultException or HttpRequestException or IOException =>
                    new UpstreamException(UpstreamFailureKind.Connection, $"The upstream connection failed: {ex.Message}", inner: ex),
                _ => ex,
            };
        }
    }

    /// <summary>An update stream that also owns the cancellation sources of its attempt.</summary>
    private sealed class OwnedUpdates(IAsyncEnumerator<ChatResponseUpdate> inner, params IDisposable[] owned) : IAsyncEnumerator<ChatResponseUpdate>
    {
        public ChatResponseUpdate Current => inner.Current;

        public ValueTask<bool> MoveNextAsync() => inner.MoveNextAsync();

        public async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync().ConfigureAwait(false);
            foreach (var item in owned)
            {
                item.Dispose();
            }
        }
    }

    private static List<ChatMessage> ToChat(IReadOnlyList<JsonObject> history)
    {
        var list = new List<ChatMessage>(history.Count);
        foreach (var message in history)
        {
            var role = (message["role"] as JsonValue)?.ToString() ?? "user";
            var content = (message["content"] as JsonValue)?.ToString() ?? string.Empty;
            switch (role)
            {
                case "assistant":
                    var assistant = new ChatMessage(ChatRole.Assistant, content);
                    foreach (var call in (message["toolCalls"] as JsonArray ?? []).OfType<JsonObject>())
                    {
                        var function = call["function"] as JsonObject;
                        Dictionary<string, object?>? arguments = null;
                        try
                        {
                            arguments = (function?["arguments"] as JsonValue)?.ToString() is { Length: > 0 } json
                                ? JsonSerializer.Deserialize<Dictionary<string, object?>>(json, AIJsonUtilities.DefaultOptions)
                                : null;
                        }
                        catch (JsonException)
                        {
                            // Arguments that are not an object are passed on as none; the call itself still stands.
                        }

                        assistant.Contents.Add(new FunctionCallContent((call["id"] as JsonValue)?.ToString() ?? string.Empty,
                            (function?["name"] as JsonValue)?.ToString() ?? string.Empty, arguments));
                    }

                    list.Add(assistant);
                    break;
                case "tool":
                    list.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent((message["toolCallId"] as JsonValue)?.ToString() ?? string.Empty, content)]));
                    break;
                case "system" or "developer":
                    list.Add(new ChatMessage(ChatRole.System, content));
                    break;
                default:
                    list.Add(new ChatMessage(ChatRole.User, content));
                    break;
            }
        }

        return list;
    }

    /// <summary>AG-UI context (<c>[{description, value}]</c>) as one system message; null when there is none.</summary>
    private static (string? Context, ApiError? Error) ParseContext(JsonNode? node)
    {
        if (node is null)
        {
            return (null, null);
        }

        if (node is not JsonArray items)
        {
            return (null, ApiError.BadRequest("'context' must be an array.", "context"));
        }

        var lines = new List<string>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            if (items[i] is not JsonObject item || item["description"] is not JsonValue description || description.GetValueKind() != JsonValueKind.String
                || item["value"] is not JsonValue value || value.GetValueKind() != JsonValueKind.String)
            {
                return (null, ApiError.BadRequest($"context[{i}] must be an object with string 'description' and 'value'.", $"context[{i}]"));
            }

            lines.Add($"{description.GetValue<string>()}: {value.GetValue<string>()}");
        }

        return (lines.Count == 0 ? null : "Context from the application:\n" + string.Join("\n", lines), null);
    }

    /// <summary>AG-UI tools (<c>{name, description, parameters}</c>) as function declarations the model may call.</summary>
    private static (List<AITool>? Tools, ApiError? Error) ParseTools(JsonNode? node)
    {
        if (node is null)
        {
            return (null, null);
        }

        if (node is not JsonArray array)
        {
            return (null, ApiError.BadRequest("'tools' must be an array.", "tools"));
        }

        var tools = new List<AITool>(array.Count);
        for (var i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject tool || tool["name"] is not JsonValue name || name.GetValueKind() != JsonValueKind.String || name.GetValue<string>().Length == 0)
            {
                return (null, ApiError.BadRequest($"tools[{i}] must be an object with a non-empty string 'name'.", $"tools[{i}]"));
            }

            if (tool["parameters"] is { } parameters && parameters is not JsonObject)
            {
                return (null, ApiError.BadRequest($"tools[{i}].parameters must be a JSON schema object.", $"tools[{i}].parameters"));
            }

            var schema = JsonSerializer.SerializeToElement(tool["parameters"] as JsonObject ?? new JsonObject { ["type"] = "object" }, SessionsJsonContext.Default.JsonObject);
            tools.Add(AIFunctionFactory.CreateDeclaration(name.GetValue<string>(), (tool["description"] as JsonValue)?.ToString(), schema));
        }

        return (tools, null);
    }
}
