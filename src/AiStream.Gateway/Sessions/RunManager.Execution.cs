using System.Text;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Diagnostics;
using AiStream.Gateway.Providers;
using AiStream.Gateway.Resilience;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// Running a run: model turns, and for an agent the tool steps between them, each streamed into the log as it happens.
/// The loop is ours, over Semantic Kernel functions exposed as <see cref="AIFunction"/>s, rather than an automatic
/// function-invoking client: every model turn goes through the same resilience as a plain run (retries and fallback
/// before its first token), and every step, argument piece and result is an event the moment it exists.
/// </summary>
internal sealed partial class RunManager
{
    private async Task ExecuteAsync(ActiveRun run)
    {
        var token = run.Cancellation.Token;
        var trace = new RunTrace();
        using var idleTimer = StartIdleWatch(run);
        // The run is a member of the session too, so a dashboard shows a thinking agent the way it shows a person.
        var member = await runPresence.EnterAsync(run.SessionId, run.RunId, run.Agent?.Name ?? run.Route.Name, Status(run, "thinking")).ConfigureAwait(false);
        try
        {
            var chat = ToChat(await store.MessagesAsync(run.SessionId, token).ConfigureAwait(false));
            if (run.Context is { } context)
            {
                chat.Insert(0, new ChatMessage(ChatRole.System, context));
            }

            IReadOnlyList<AIFunction> functions = [];
            if (run.Agent is { } agent)
            {
                chat.Insert(0, new ChatMessage(ChatRole.System, agent.Instructions));
                functions = definitions.ToolsFor(agent, ToolContext(run));
            }

            List<AITool> tools = [.. functions, .. run.Tools ?? []];
            var options = new ChatOptions { Tools = tools.Count > 0 ? tools : null, MaxOutputTokens = run.MaxOutputTokens, Temperature = run.Temperature };
            for (var step = 1; ; step++)
            {
                if (run.Agent is { } limited && step > limited.MaxSteps)
                {
                    throw new RunLimitException("max_steps", $"The agent used all {limited.MaxSteps} of its steps (max_steps) without finishing its answer.");
                }

                var turn = await TurnAsync(run, trace, member, chat, options, step, token).ConfigureAwait(false);
                chat.Add(turn.Message);
                // A plain run is one turn. An agent goes on while it calls tools: its own run here; a call to a client's
                // tool (AG-UI frontend tools) ends the run, for the client to answer; a tool that does not exist is an
                // error result the model sees, like a failing one.
                if (run.Agent is null || turn.Calls.Count == 0)
                {
                    break;
                }

                var forClient = turn.Calls.Where(c => run.Tools?.Any(t => t.Name == c.Name) == true && !functions.Any(f => f.Name == c.Name)).ToList();
                foreach (var call in turn.Calls.Except(forClient))
                {
                    chat.Add(await ToolStepAsync(run, trace, member, functions.FirstOrDefault(f => f.Name == call.Name), call, token).ConfigureAwait(false));
                }

                if (forClient.Count > 0)
                {
                    break;
                }

                token.ThrowIfCancellationRequested();
                await member.SetStateAsync(Status(run, "thinking")).ConfigureAwait(false);
            }

            await FinishAsync(run, trace, "success").ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            await FinishAsync(run, trace, "cancelled").ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var code = ex switch
            {
                UpstreamException upstream => upstream.Code,
                RunLimitException limit => limit.Code,
                _ => "run_failed",
            };
            if (ex is RunLimitException)
            {
                Log.RunLimited(logger, run.SessionId, run.RunId, code);
            }
            else
            {
                Log.RunFailed(logger, run.SessionId, run.RunId, ex);
            }

            run.Outcome = "error";
            _runs.TryRemove(Key(run.SessionId, run.RunId), out _);
            var message = ex is RunLimitException ? ex.Message : "The run failed: " + ex.Message;
            await AppendAsync(run, [.. trace.Close(), AgUi.Event(AgUi.RunError, ("message", message), ("code", code), ("runId", run.RunId))]).ConfigureAwait(false);
        }
        finally
        {
            await member.DisposeAsync().ConfigureAwait(false);
            _runs.TryRemove(Key(run.SessionId, run.RunId), out _);
            await runControl.UnregisterAsync(run.SessionId, run.RunId).ConfigureAwait(false);
            run.Retention?.Dispose();
            run.Cancellation.Dispose();
        }
    }

    /// <summary>
    /// One model turn: opened through resilience, then streamed into the log: reasoning, text, and tool calls with
    /// their arguments piece by piece. An agent's turn is a step. Its usage is counted however it ends.
    /// </summary>
    private async Task<(ChatMessage Message, List<FunctionCallContent> Calls)> TurnAsync(
        ActiveRun run, RunTrace trace, IRunMember member, List<ChatMessage> chat, ChatOptions options, int step, CancellationToken token)
    {
        var reservation = step == 1 ? run.Reservation : await ReserveTurnAsync(run, chat, token).ConfigureAwait(false);
        var messageId = NewId("msg");
        var text = new StringBuilder();
        var generated = new StringBuilder();
        var calls = new List<FunctionCallContent>();
        var callIds = new Dictionary<int, string>();
        UsageDetails? reported = null;
        var answered = false;
        try
        {
            if (run.Agent is not null)
            {
                trace.Step = $"model:{step}";
                await AppendAsync(run, AgUi.Event(AgUi.StepStarted, ("stepName", trace.Step))).ConfigureAwait(false);
            }

            var (updates, route) = await OpenAsync(run, chat, options, token).ConfigureAwait(false);
            run.Route = route;
            answered = true;
            await using var _ = updates.ConfigureAwait(false);
            do
            {
                var update = updates.Current;
                foreach (var delta in ToolCallStreaming.Deltas(update))
                {
                    if (!callIds.TryGetValue(delta.Index, out var callId))
                    {
                        if (delta.CallId is null || delta.Name is null)
                        {
                            continue; // a piece of a call that never said its id and name: it arrives whole at the end
                        }

                        callIds[delta.Index] = callId = delta.CallId;
                        await AppendAsync(run, trace.CloseReasoning()).ConfigureAwait(false);
                        trace.OpenCalls.Add(callId);
                        await member.SetStateAsync(Status(run, "calling_tool", delta.Name)).ConfigureAwait(false);
                        await AppendAsync(run, AgUi.Event(AgUi.ToolCallStart, ("toolCallId", callId), ("toolCallName", delta.Name), ("parentMessageId", messageId)))
                            .ConfigureAwait(false);
                    }

                    if (delta.ArgumentsDelta.Length > 0)
                    {
                        await AppendAsync(run, AgUi.Event(AgUi.ToolCallArgs, ("toolCallId", callId), ("delta", delta.ArgumentsDelta))).ConfigureAwait(false);
                    }
                }

                foreach (var content in update.Contents)
                {
                    switch (content)
                    {
                        case TextReasoningContent { Text.Length: > 0 } reasoning:
                            if (trace.Reasoning is null)
                            {
                                trace.Reasoning = NewId("reasoning");
                                await AppendAsync(run,
                                    AgUi.Event(AgUi.ReasoningStart, ("messageId", trace.Reasoning)),
                                    AgUi.Event(AgUi.ReasoningMessageStart, ("messageId", trace.Reasoning), ("role", "reasoning"))).ConfigureAwait(false);
                            }

                            generated.Append(reasoning.Text);
                            await AppendAsync(run, AgUi.Event(AgUi.ReasoningMessageContent, ("messageId", trace.Reasoning), ("delta", reasoning.Text))).ConfigureAwait(false);
                            break;
                        case TextContent { Text.Length: > 0 } delta:
                            if (trace.Text is null)
                            {
                                await AppendAsync(run, trace.CloseReasoning()).ConfigureAwait(false);
                                trace.Text = messageId;
                                await member.SetStateAsync(Status(run, "writing")).ConfigureAwait(false);
                                await AppendAsync(run, AgUi.Event(AgUi.TextMessageStart, ("messageId", messageId), ("role", "assistant"))).ConfigureAwait(false);
                            }

                            text.Append(delta.Text);
                            generated.Append(delta.Text);
                            await AppendAsync(run, AgUi.Event(AgUi.TextMessageContent, ("messageId", messageId), ("delta", delta.Text))).ConfigureAwait(false);
                            break;
                        case FunctionCallContent call:
                            await AppendAsync(run, trace.CloseReasoning()).ConfigureAwait(false);
                            var arguments = ToolArguments.Serialize(call.Arguments);
                            generated.Append(call.Name).Append(arguments);
                            calls.Add(call);
                            if (trace.OpenCalls.Remove(call.CallId))
                            {
                                await AppendAsync(run, AgUi.Event(AgUi.ToolCallEnd, ("toolCallId", call.CallId))).ConfigureAwait(false);
                                break;
                            }

                            // The provider gave the call whole (no pieces): it is logged whole.
                            await member.SetStateAsync(Status(run, "calling_tool", call.Name)).ConfigureAwait(false);
                            await AppendAsync(run,
                                AgUi.Event(AgUi.ToolCallStart, ("toolCallId", call.CallId), ("toolCallName", call.Name), ("parentMessageId", messageId)),
                                AgUi.Event(AgUi.ToolCallArgs, ("toolCallId", call.CallId), ("delta", arguments)),
                                AgUi.Event(AgUi.ToolCallEnd, ("toolCallId", call.CallId))).ConfigureAwait(false);
                            break;
                        case UsageContent usage:
                            reported = usage.Details;
                            break;
                    }
                }
            }
            while (await updates.MoveNextAsync().ConfigureAwait(false));

            // The turn is over: whatever it left open (a call streamed but never completed) is closed.
            await AppendAsync(run, [.. trace.Close()]).ConfigureAwait(false);
            var message = new ChatMessage(ChatRole.Assistant, text.ToString()) { MessageId = messageId };
            foreach (var call in calls)
            {
                message.Contents.Add(call);
            }

            return (message, calls);
        }
        finally
        {
            RecordUsage(run, answered ? chat : null, generated, reported, reservation);
        }
    }

    /// <summary>Holds the next model turn of an agent against the starter's daily budget, like the first.</summary>
    private async ValueTask<Limits.TokenBudget.Reservation?> ReserveTurnAsync(ActiveRun run, List<ChatMessage> chat, CancellationToken token)
    {
        if (run.Caller is not { } caller || !budget.Applies(caller))
        {
            return null;
        }

        var needed = tokens.CountPrompt(chat.Select(m => (m.Role.Value, m.AuthorName, m.Text)), null, token) + budget.DefaultMaxTokens;
        var (reservation, _) = await budget.TryReserveAsync(caller, run.FallbackBudgetKey ?? "unknown", needed, token).ConfigureAwait(false);
        return reservation ?? throw new RunLimitException("daily_token_budget_exceeded",
            $"The next step needs up to {needed} tokens, more than is left of today's budget (AiStream:Limits:DailyTokens).");
    }

    private async Task FinishAsync(ActiveRun run, RunTrace trace, string outcome)
    {
        run.Outcome = outcome;
        // Once a client can see the end of the run, the run is no longer there to cancel.
        _runs.TryRemove(Key(run.SessionId, run.RunId), out _);
        var events = trace.Close();

        // AG-UI 1.0's outcome is an object: {"type":"success"} or {"type":"cancelled"}; the log also says why.
        var outcomeBody = new JsonObject { ["type"] = outcome };
        if (outcome == "cancelled")
        {
            // Nobody asked when the host is stopping (the run's token follows ApplicationStopping): say so.
            outcomeBody["reason"] = run.CancelReason ?? (lifetime.ApplicationStopping.IsCancellationRequested ? "shutdown" : "requested");
        }

        events.Add(AgUi.Event(AgUi.RunFinished, ("threadId", run.SessionId), ("runId", run.RunId), ("outcome", outcomeBody)));
        await AppendAsync(run, [.. events]).ConfigureAwait(false);
        Log.RunEnded(logger, run.SessionId, run.RunId, outcome);
    }

    /// <summary>
    /// Usage is always counted, per model turn: what the model reported, or, when it reported nothing (no usage from
    /// the upstream, a cancelled or failed turn), the prompt and the generated text counted with the tokenizer.
    /// </summary>
    private void RecordUsage(ActiveRun run, List<ChatMessage>? chat, StringBuilder generated, UsageDetails? reported, Limits.TokenBudget.Reservation? reservation)
    {
        if (chat is null)
        {
            reservation?.Settle(0);
            return; // no model answered: nothing was consumed
        }

        var estimated = reported?.InputTokenCount is null || reported.OutputTokenCount is null;
        var input = reported?.InputTokenCount ?? tokens.CountPrompt(chat.Select(m => (m.Role.Value, m.AuthorName, m.Text)), null);
        var output = reported?.OutputTokenCount ?? tokens.Count(generated.ToString());
        metrics.RecordUsage(new UsageRecord(run.Route.Name, run.Route.ProviderName, input, output, estimated));
        reservation?.Settle(input + output);
    }

    private static JsonObject Status(ActiveRun run, string status, string? tool = null)
    {
        var state = new JsonObject { ["status"] = status, ["runId"] = run.RunId };
        if (tool is not null)
        {
            state["tool"] = tool;
        }

        if (run.Agent is { } agent)
        {
            state["agent"] = agent.Name;
        }

        return state;
    }

    /// <summary>What is open in the log for a run, so however the run ends, the log closes it.</summary>
    private sealed class RunTrace
    {
        public string? Step { get; set; }

        public string? Text { get; set; }

        public string? Reasoning { get; set; }

        public HashSet<string> OpenCalls { get; } = new(StringComparer.Ordinal);

        public JsonObject[] CloseReasoning()
        {
            if (Reasoning is not { } id)
            {
                return [];
            }

            Reasoning = null;
            return [AgUi.Event(AgUi.ReasoningMessageEnd, ("messageId", id)), AgUi.Event(AgUi.ReasoningEnd, ("messageId", id))];
        }

        public List<JsonObject> Close()
        {
            var events = new List<JsonObject>(CloseReasoning());
            if (Text is { } text)
            {
                events.Add(AgUi.Event(AgUi.TextMessageEnd, ("messageId", text)));
                Text = null;
            }

            events.AddRange(OpenCalls.Select(id => AgUi.Event(AgUi.ToolCallEnd, ("toolCallId", id))));
            OpenCalls.Clear();
            if (Step is { } step)
            {
                events.Add(AgUi.Event(AgUi.StepFinished, ("stepName", step)));
                Step = null;
            }

            return events;
        }
    }
}

/// <summary>A run ended by one of its limits (steps, budget): a <c>RUN_ERROR</c> with <see cref="Code"/>, not a failure.</summary>
internal sealed class RunLimitException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;
}
