using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Diagnostics;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Sessions;

/// <summary>A request to start a run in a session.</summary>
internal sealed record RunRequest(JsonNode? Messages, string? Model, string? Prompt, string? RunId = null, JsonNode? Tools = null, JsonNode? Context = null, JsonObject? State = null)
{
    /// <summary>The prompt template's variables.</summary>
    public JsonObject? Variables { get; init; }

    /// <summary>The agent to run, by name.</summary>
    public string? Agent { get; init; }

    /// <summary>The member who started the run (may cancel it without admin); null when authentication is off.</summary>
    public string? Owner { get; init; }

    /// <summary>Who asked, for the daily token budget; null for runs the gateway starts itself.</summary>
    public Security.CallerGrants? Caller { get; init; }

    /// <summary>The key the budget is counted under when the caller has no credential (its address).</summary>
    public string? FallbackBudgetKey { get; init; }

    /// <summary>
    /// Answer a user message again (the AI SDK's <c>regenerate</c>): its answer leaves the conversation (a
    /// <c>conversation.superseded</c> event; the log keeps it), so neither this run's model nor a later one sees it.
    /// </summary>
    public bool Regenerate { get; init; }

    /// <summary>The user message to answer again; null (or one the conversation lacks) for its last user message.</summary>
    public string? RegenerateFrom { get; init; }
}

/// <summary>
/// Starts and stops runs: one generation whose tokens become events in the session log. A run is the single writer of
/// its own events, keeps going when its starter disconnects, and always ends with RUN_FINISHED or RUN_ERROR.
/// </summary>
internal sealed partial class RunManager(
    ISessionStore store,
    ModelCatalog catalog,
    ChatClientFactory clients,
    TokenCounter tokens,
    Limits.TokenBudget budget,
    Limits.LimitsMetrics limitsMetrics,
    AiStreamMetrics metrics,
    IRunPresence runPresence,
    UpstreamResilience resilience,
    IRunControl runControl,
    IRunDefinitions definitions,
    IOptions<SessionsOptions> options,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILogger<RunManager> logger)
{
    private readonly ConcurrentDictionary<string, ActiveRun> _runs = new(StringComparer.Ordinal);

    /// <summary>Validates and starts a run; returns its id or a client error.</summary>
    public async Task<(string? RunId, ApiError? Error)> StartAsync(string sessionId, RunRequest request, CancellationToken cancellationToken)
    {
        var (rendered, agent, definitionError) = await ResolveAsync(request, cancellationToken).ConfigureAwait(false);
        if (definitionError is not null)
        {
            return (null, definitionError);
        }

        var modelName = request.Model ?? rendered?.Model ?? agent?.Model ?? catalog.DefaultModel;
        if (!catalog.TryResolve(modelName, out var route))
        {
            return (null, ApiError.ModelNotFound(modelName));
        }

        var (tools, toolsError) = ParseTools(request.Tools);
        if (toolsError is not null)
        {
            return (null, toolsError);
        }

        var (context, contextError) = ParseContext(request.Context);
        if (contextError is not null)
        {
            return (null, contextError);
        }

        var userEvents = new List<JsonObject>();
        if (request.State is { Count: > 0 } state)
        {
            if (StateLimits.From(options.Value).Check(state) is { } stateError)
            {
                return (null, ApiError.BadRequest($"'state': {stateError}.", "state", "state_limit"));
            }

            // The caller's shared state (AG-UI RunAgentInput.state) goes into the log before the run that sees it.
            userEvents.Add(AgUi.Event(AgUi.StateSnapshot, ("snapshot", state.DeepClone())));
        }

        if (request.Messages is { } node && node is not JsonArray)
        {
            return (null, ApiError.BadRequest("'messages' must be an array.", "messages"));
        }

        if (request.Messages is JsonArray messages)
        {
            var ids = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < messages.Count; i++)
            {
                if (messages[i] is not JsonObject message || message["role"] is not JsonValue role || role.GetValueKind() != JsonValueKind.String
                    || role.GetValue<string>() is not ("user" or "system" or "developer" or "assistant" or "tool"))
                {
                    return (null, ApiError.BadRequest($"messages[{i}] must be an object with role user, system, developer, assistant or tool.", $"messages[{i}]"));
                }

                string text;
                switch (message["content"])
                {
                    case null:
                        text = string.Empty;
                        break;
                    case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                        text = value.GetValue<string>();
                        break;
                    case JsonArray parts:
                        text = string.Join("\n", parts.OfType<JsonObject>().Select(p => p["text"]).OfType<JsonValue>()
                            .Where(t => t.GetValueKind() == JsonValueKind.String).Select(t => t.GetValue<string>()));
                        break;
                    default:
                        return (null, ApiError.BadRequest($"messages[{i}].content must be a string or an array of parts.", $"messages[{i}].content"));
                }

                var id = (message["id"] as JsonValue)?.GetValueKind() == JsonValueKind.String ? message["id"]!.GetValue<string>() : NewId("msg");
                if (!ids.Add(id))
                {
                    // Two messages under one id would be merged into one in the conversation.
                    return (null, ApiError.BadRequest($"messages[{i}].id repeats an earlier message's id.", $"messages[{i}].id"));
                }

                if (await store.HasMessageAsync(sessionId, id, cancellationToken).ConfigureAwait(false))
                {
                    continue; // already in the conversation (AG-UI clients resend the whole history)
                }

                if (Encoding.UTF8.GetByteCount(text) > options.Value.MaxEventBytes)
                {
                    // A new message is one event in the log: bounded like every event anyone publishes.
                    return (null, new ApiError(StatusCodes.Status413PayloadTooLarge, $"messages[{i}] is longer than {options.Value.MaxEventBytes} bytes (AiStream:Sessions:MaxEventBytes).",
                        "invalid_request_error", "message_too_large", $"messages[{i}]"));
                }

                if (role.GetValue<string>() == "tool")
                {
                    var toolCallId = (message["toolCallId"] as JsonValue)?.ToString() ?? string.Empty;
                    userEvents.Add(AgUi.Event(AgUi.ToolCallResult, ("messageId", id), ("toolCallId", toolCallId), ("content", text), ("role", "tool")));
                }
                else if (text.Length > 0)
                {
                    userEvents.Add(AgUi.Event(AgUi.TextMessageStart, ("messageId", id), ("role", role.GetValue<string>())));
                    userEvents.Add(AgUi.Event(AgUi.TextMessageContent, ("messageId", id), ("delta", text)));
                    userEvents.Add(AgUi.Event(AgUi.TextMessageEnd, ("messageId", id)));
                }
            }
        }

        if (request.Regenerate)
        {
            var (superseded, regenerateError) = await SupersededAsync(sessionId, request.RegenerateFrom, request.Caller, cancellationToken).ConfigureAwait(false);
            if (regenerateError is not null)
            {
                return (null, regenerateError);
            }

            if (superseded!.Count > 0)
            {
                userEvents.Add(AgUi.Event(AgUi.Custom, ("name", SessionProjection.Superseded), ("value", new JsonObject { ["messageIds"] = superseded })));
            }
        }

        if (rendered is not null)
        {
            // The rendered template is the user's message, so every watcher sees what was asked.
            var id = NewId("msg");
            userEvents.Add(AgUi.Event(AgUi.TextMessageStart, ("messageId", id), ("role", "user")));
            userEvents.Add(AgUi.Event(AgUi.TextMessageContent, ("messageId", id), ("delta", rendered.Text)));
            userEvents.Add(AgUi.Event(AgUi.TextMessageEnd, ("messageId", id)));
        }

        // Each run holds a model stream and its partial text: a session cannot start them without bound.
        if (_runs.Values.Count(r => r.SessionId == sessionId) >= options.Value.MaxRunsPerSession)
        {
            limitsMetrics.Refused("runs_per_session");
            return (null, new ApiError(StatusCodes.Status429TooManyRequests,
                $"Session '{sessionId}' already has {options.Value.MaxRunsPerSession} runs in progress (AiStream:Sessions:MaxRunsPerSession); wait for one to end.",
                "rate_limit_error", "too_many_runs_in_session") { RetryAfter = TimeSpan.FromSeconds(5) });
        }

        // The daily budget is checked before the model is called: the prompt as sent plus the most the answer may use.
        Limits.TokenBudget.Reservation? reservation = null;
        if (request.Caller is { } caller && budget.Applies(caller))
        {
            // What the first turn sends that is known now: the messages, the rendered template, the agent's instructions.
            var needed = tokens.Count(request.Messages?.ToJsonString() ?? "", cancellationToken) + tokens.Count(rendered?.Text ?? "", cancellationToken)
                + tokens.Count(agent?.Instructions ?? "", cancellationToken) + budget.DefaultMaxTokens;
            (reservation, var retryAfter) = await budget.TryReserveAsync(caller, request.FallbackBudgetKey ?? "unknown", needed, cancellationToken).ConfigureAwait(false);
            if (reservation is null)
            {
                return (null, new ApiError(StatusCodes.Status429TooManyRequests,
                    $"This run needs up to {needed} tokens, more than is left of today's budget (AiStream:Limits:DailyTokens).",
                    "rate_limit_error", "daily_token_budget_exceeded") { RetryAfter = retryAfter });
            }
        }

        var runId = request.RunId ?? NewId("run");
        var run = new ActiveRun(sessionId, runId, route, CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStopping))
        {
            Tools = tools,
            Context = context,
            Owner = request.Owner,
            Reservation = reservation,
            Agent = agent,
            Caller = request.Caller,
            FallbackBudgetKey = request.FallbackBudgetKey,
            MaxOutputTokens = rendered?.MaxOutputTokens,
            Temperature = rendered?.Temperature,
        };
        if (!_runs.TryAdd(Key(sessionId, runId), run))
        {
            reservation?.Settle(0);
            run.Cancellation.Dispose();
            return (null, new ApiError(StatusCodes.Status409Conflict, $"Run '{runId}' is already running.", "invalid_request_error", "run_exists", "runId"));
        }

        try
        {
            // Cancels sent to other nodes find this one; the session's state stays on this node while the run writes.
            await runControl.ListenAsync((session, id, reason) => _runs.ContainsKey(Key(session, id)) ? CancelAsync(session, id, reason) : Task.CompletedTask).ConfigureAwait(false);
            run.Retention = store.Retain(sessionId);
            await runControl.RegisterAsync(sessionId, runId, request.Owner).ConfigureAwait(false);

            if (userEvents.Count > 0)
            {
                await store.AppendAsync(sessionId, userEvents, null, null, CancellationToken.None, buffered: true).ConfigureAwait(false);
            }

            // Appending RUN_STARTED before answering means a watcher that joins right after the answer sees the run.
            await AppendAsync(run, AgUi.Event(AgUi.RunStarted, ("threadId", sessionId), ("runId", runId))).ConfigureAwait(false);
        }
        catch
        {
            // The run never started (the store refused the session, or Redis is away): it holds no slot and spends nothing.
            _runs.TryRemove(Key(sessionId, runId), out _);
            reservation?.Settle(0);
            await runControl.UnregisterAsync(sessionId, runId).ConfigureAwait(false);
            run.Retention?.Dispose();
            run.Cancellation.Dispose();
            throw;
        }

        run.Task = Task.Run(() => ExecuteAsync(run), CancellationToken.None);
        return (runId, null);
    }

    /// <summary>
    /// The ids of the answer (the assistant and tool messages right after it) to the user message a regenerate repeats:
    /// <paramref name="from"/>, or the conversation's last user message. Refused while a run is in progress in the
    /// session (its answer is not finished), and, for anyone but an admin, for any question but the latest: a writer
    /// replaces the latest answer; rewriting history is an admin's (as a MESSAGES_SNAPSHOT is).
    /// </summary>
    private async Task<(JsonArray? Ids, ApiError? Error)> SupersededAsync(string sessionId, string? from, Security.CallerGrants? caller, CancellationToken cancellationToken)
    {
        if ((await store.InfoAsync(sessionId, cancellationToken).ConfigureAwait(false)).GatewayRuns.Count > 0)
        {
            return (null, new ApiError(StatusCodes.Status409Conflict, "A run is in progress in this session: stop it or wait for it to end before regenerating.",
                "invalid_request_error", "run_in_progress"));
        }

        var conversation = await store.MessagesAsync(sessionId, cancellationToken).ConfigureAwait(false);
        static string? Field(JsonObject message, string name) =>
            message[name] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : null;
        var latest = conversation.Count - 1;
        while (latest >= 0 && Field(conversation[latest], "role") != "user")
        {
            latest--;
        }

        var at = latest;
        if (from is not null && latest >= 0 && Field(conversation[latest], "id") != from)
        {
            var earlier = latest - 1;
            while (earlier >= 0 && !(Field(conversation[earlier], "role") == "user" && Field(conversation[earlier], "id") == from))
            {
                earlier--;
            }

            if (earlier >= 0 && caller?.RightsFor(sessionId).HasFlag(Security.SessionRights.Admin) != true && caller is not null)
            {
                return (null, new ApiError(StatusCodes.Status409Conflict, "Only the answer to the conversation's latest question can be regenerated (earlier ones take the session's admin right).",
                    "invalid_request_error", "not_latest_question"));
            }

            at = earlier >= 0 ? earlier : latest;
        }

        var ids = new JsonArray();
        for (var i = at + 1; at >= 0 && i < conversation.Count && Field(conversation[i], "role") is "assistant" or "tool"; i++)
        {
            if (Field(conversation[i], "id") is { } id)
            {
                ids.Add(id);
            }
        }

        return (ids, null);
    }

    /// <summary>Who started a run of this session (on whichever node runs it); null when unknown or anonymous.</summary>
    public async Task<string?> OwnerOfAsync(string sessionId, string runId) =>
        _runs.TryGetValue(Key(sessionId, runId), out var run) ? run.Owner : await runControl.OwnerElsewhereAsync(sessionId, runId).ConfigureAwait(false);

    /// <summary>Cancels a run (on whichever node runs it) and waits (briefly) for it to end; null when no such run is active.</summary>
    public async Task<string?> CancelAsync(string sessionId, string runId, string reason)
    {
        if (!_runs.TryGetValue(Key(sessionId, runId), out var run))
        {
            return await CancelElsewhereAsync(sessionId, runId, reason).ConfigureAwait(false);
        }

        run.CancelReason ??= reason;
        try
        {
            await run.Cancellation.CancelAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            return run.Outcome ?? "success"; // it ended in the meantime
        }

        if (run.Task is { } task)
        {
            try
            {
                await task.WaitAsync(TimeSpan.FromSeconds(5), time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Still ending; the answer says so.
            }
        }

        return run.Outcome ?? "cancelling";
    }

    private async Task<string?> CancelElsewhereAsync(string sessionId, string runId, string reason)
    {
        if (!await runControl.CancelElsewhereAsync(sessionId, runId, reason).ConfigureAwait(false))
        {
            return null;
        }

        // The run ends on its node; its end reaches this node's copy of the log.
        var deadline = time.GetUtcNow() + TimeSpan.FromSeconds(5);
        while (time.GetUtcNow() < deadline)
        {
            var info = await store.InfoAsync(sessionId, CancellationToken.None).ConfigureAwait(false);
            if (!info.ActiveRuns.Contains(runId))
            {
                return "cancelled";
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), time).ConfigureAwait(false);
        }

        return "cancelling";
    }

    /// <summary>Checks every second whether anyone watches the session; cancels the run after the idle limit.</summary>
    private ITimer? StartIdleWatch(ActiveRun run)
    {
        var limit = TimeSpan.FromSeconds(options.Value.IdleCancelSeconds);
        if (limit <= TimeSpan.Zero)
        {
            return null;
        }

        var unwatchedSince = (DateTimeOffset?)null;
        return time.CreateTimer(_ =>
        {
            if (store.Watchers(run.SessionId) > 0)
            {
                unwatchedSince = null;
                return;
            }

            var now = time.GetUtcNow();
            unwatchedSince ??= now;
            if (now - unwatchedSince >= limit && !run.Cancellation.IsCancellationRequested)
            {
                Log.IdleCancel(logger, run.SessionId, run.RunId, limit.TotalSeconds);
                run.CancelReason ??= "idle";
                run.Cancellation.Cancel();
            }
        }, null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    private async ValueTask<AppendResult> AppendAsync(ActiveRun run, params JsonObject[] events)
    {
        if (run.Fenced || events.Length == 0)
        {
            return new AppendResult([], false, []);
        }

        try
        {
            return await store.AppendAsync(run.SessionId, events, run.RunId, null, CancellationToken.None, buffered: true).ConfigureAwait(false);
        }
        catch (RunFencedException ex)
        {
            // Another node ended this run (it took this node for dead): stop the model call, write nothing more.
            run.Fenced = true;
            Log.RunFenced(logger, run.SessionId, run.RunId, ex.Message);
            run.CancelReason ??= "fenced";
            await run.Cancellation.CancelAsync().ConfigureAwait(false);
            return new AppendResult([], false, []);
        }
    }

    private static string Key(string sessionId, string runId) => sessionId + "\n" + runId;

    private static string NewId(string prefix) => prefix + "_" + Guid.NewGuid().ToString("N")[..20];

    private sealed class ActiveRun(string sessionId, string runId, ModelRoute route, CancellationTokenSource cancellation)
    {
        public string SessionId { get; } = sessionId;
        public string RunId { get; } = runId;
        /// <summary>The model serving the run: the one asked for, or the fallback that answered.</summary>
        public ModelRoute Route { get; set; } = route;
        public CancellationTokenSource Cancellation { get; } = cancellation;
        public Task? Task { get; set; }
        public string? Outcome { get; set; }
        public string? CancelReason { get; set; }

        /// <summary>Another node ended the run; nothing more of it is written.</summary>
        public bool Fenced { get; set; }

        /// <summary>Keeps the session's state on this node while the run writes.</summary>
        public IDisposable? Retention { get; set; }

        /// <summary>Tools the model may call (AG-UI frontend tools).</summary>
        public List<AITool>? Tools { get; init; }

        /// <summary>AG-UI context for this run, given to the model as a system message.</summary>
        public string? Context { get; init; }

        /// <summary>The member who started it.</summary>
        public string? Owner { get; init; }

        /// <summary>Its tokens held in the starter's daily budget until usage settles them.</summary>
        public Limits.TokenBudget.Reservation? Reservation { get; init; }

        /// <summary>The agent it runs, with its tools and step limit; null for a plain run.</summary>
        public RunAgent? Agent { get; init; }

        /// <summary>Who started it, so each later model turn of an agent is held against the same budget.</summary>
        public Security.CallerGrants? Caller { get; init; }

        public string? FallbackBudgetKey { get; init; }

        /// <summary>From a prompt template's execution settings.</summary>
        public int? MaxOutputTokens { get; init; }

        public float? Temperature { get; init; }
    }

}
