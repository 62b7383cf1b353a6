using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>One request the fake provider received.</summary>
internal sealed record ReceivedRequest(string Path, string Query, IHeaderDictionary Headers, JsonObject Body, DateTimeOffset At);

/// <summary>What the fake provider does with one request.</summary>
internal abstract record UpstreamScript
{
    /// <summary>Replays SSE events (exact bytes), pausing <paramref name="Gap"/> between them.</summary>
    public sealed record Replay(IReadOnlyList<string> Events, TimeSpan Gap = default) : UpstreamScript;

    /// <summary>Sends <paramref name="Count"/> events of the list, then aborts the connection.</summary>
    public sealed record CutAfter(IReadOnlyList<string> Events, int Count) : UpstreamScript;

    /// <summary>Sends <paramref name="Count"/> events, then stays silent until the client goes away.</summary>
    public sealed record StallAfter(IReadOnlyList<string> Events, int Count) : UpstreamScript;

    /// <summary>Sends one event each time the test releases the gate.</summary>
    public sealed record Gated(IReadOnlyList<string> Events, SemaphoreSlim Gate) : UpstreamScript;

    /// <summary>Answers with a status and a JSON error body.</summary>
    public sealed record Fail(int Status, string? RetryAfter = null, string? Message = null) : UpstreamScript;

    /// <summary>Answers a non-streamed request with this JSON.</summary>
    public sealed record Json(string Body) : UpstreamScript;
}

/// <summary>
/// A fake LLM provider: a real Kestrel server on a loopback port speaking OpenAI's Chat Completions wire format.
/// It is the only fake in the suite, standing in for the provider we cannot reach from here.
/// </summary>
internal sealed class FakeUpstream : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<UpstreamScript> _scripts = new();
    private readonly TaskCompletionSource<DateTimeOffset> _aborted = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstRequest = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private UpstreamScript _default;

    private FakeUpstream(WebApplication app, UpstreamScript defaultScript)
    {
        _app = app;
        _default = defaultScript;
    }

    public ConcurrentQueue<ReceivedRequest> Requests { get; } = new();

    public int RequestCount => Requests.Count;

    /// <summary>Base URL ending in <c>/v1</c>, as configured for an OpenAI-compatible provider.</summary>
    public string BaseUrl { get; private set; } = string.Empty;

    /// <summary>The server root, for Azure-style URLs.</summary>
    public string Root { get; private set; } = string.Empty;

    /// <summary>Completes when a request's client went away before the response ended.</summary>
    public Task<DateTimeOffset> Aborted => _aborted.Task;

    /// <summary>Completes when the first request arrived.</summary>
    public Task FirstRequest => _firstRequest.Task;

    public static async Task<FakeUpstream> StartAsync(UpstreamScript? defaultScript = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var fake = new FakeUpstream(app, defaultScript ?? new UpstreamScript.Replay(Fixtures.Events("openai-chat-text-usage.sse")));
        app.MapPost("/v1/chat/completions", fake.HandleAsync);
        app.MapPost("/openai/deployments/{deployment}/chat/completions", fake.HandleAsync);
        await app.StartAsync();
        fake.Root = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        fake.BaseUrl = fake.Root + "/v1";
        return fake;
    }

    /// <summary>Queues scripts for the next requests, in order; after they run out the default applies.</summary>
    public FakeUpstream Then(params UpstreamScript[] scripts)
    {
        foreach (var script in scripts)
        {
            _scripts.Enqueue(script);
        }

        return this;
    }

    public FakeUpstream Always(UpstreamScript script)
    {
        _default = script;
        return this;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var body = (JsonObject)(await JsonNode.ParseAsync(context.Request.Body))!;
        Requests.Enqueue(new ReceivedRequest(context.Request.Path, context.Request.QueryString.Value ?? string.Empty,
            new HeaderDictionary(context.Request.Headers.ToDictionary(h => h.Key, h => h.Value, StringComparer.OrdinalIgnoreCase)), body, DateTimeOffset.UtcNow));
        _firstRequest.TrySetResult();
        var aborted = context.RequestAborted;
        using var registration = aborted.Register(() => _aborted.TrySetResult(DateTimeOffset.UtcNow));
        var script = _scripts.TryDequeue(out var next) ? next : _default;
        try
        {
            switch (script)
            {
                case UpstreamScript.Fail fail:
                    context.Response.StatusCode = fail.Status;
                    if (fail.RetryAfter is not null)
                    {
                        context.Response.Headers.RetryAfter = fail.RetryAfter;
                    }

                    context.Response.ContentType = "application/json";
                    var error = new JsonObject
                    {
                        ["error"] = new JsonObject
                        {
                            ["message"] = fail.Message ?? "fake failure " + fail.Status,
                            ["type"] = fail.Status < 500 ? "invalid_request_error" : "server_error",
                            ["param"] = null,
                            ["code"] = "fake_" + fail.Status,
                        },
                    };
                    await context.Response.WriteAsync(error.ToJsonString());
                    return;
                case UpstreamScript.Json json:
                    context.Response.ContentType = "application/json";
                    await context.Response.WriteAsync(json.Body);
                    return;
                case UpstreamScript.Replay replay:
                    await StartStream(context);
                    foreach (var e in replay.Events)
                    {
                        await Send(context, e);
                        if (replay.Gap > TimeSpan.Zero)
                        {
                            await Task.Delay(replay.Gap, aborted);
                        }
                    }

                    return;
                case UpstreamScript.CutAfter cut:
                    await StartStream(context);
                    foreach (var e in cut.Events.Take(cut.Count))
                    {
                        await Send(context, e);
                    }

                    await Task.Delay(50, aborted);
                    context.Abort();
                    return;
                case UpstreamScript.StallAfter stall:
                    await StartStream(context);
                    foreach (var e in stall.Events.Take(stall.Count))
                    {
                        await Send(context, e);
                    }

                    await Task.Delay(Timeout.Infinite, aborted);
                    return;
                case UpstreamScript.Gated gated:
                    await StartStream(context);
                    foreach (var e in gated.Events)
                    {
                        await gated.Gate.WaitAsync(aborted);
                        await Send(context, e);
                    }

                    return;
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The gateway went away: that is what the abort tests look for.
        }
    }

    private static async Task StartStream(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream; charset=utf-8";
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static async Task Send(HttpContext context, string sseEvent)
    {
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(sseEvent), context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }
}
