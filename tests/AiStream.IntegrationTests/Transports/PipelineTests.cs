using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using AiStream.IntegrationTests.Infrastructure;
using AiStream.IntegrationTests.Sessions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Transports;

/// <summary>
/// One front door: every transport is an HTTP request through the ASP.NET Core pipeline, so middleware (and with it
/// authentication, authorization, CORS, rate limiting and host filtering) applies to all of them.
/// </summary>
[Collection(TimingTests.Name)]
public sealed class PipelineTests
{
    /// <summary>Puts a middleware in front of the gateway's own pipeline.</summary>
    private sealed class FrontMiddleware(Func<HttpContext, Func<Task>, Task> middleware) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(middleware);
            next(app);
        };
    }

    private static GatewayFactory Gateway(Func<HttpContext, Func<Task>, Task> middleware) =>
        new(Sim(), services: services => services.AddSingleton<IStartupFilter>(new FrontMiddleware(middleware)));

    [Fact]
    public async Task EveryTransport_PassesAMiddlewareAddedToThePipeline()
    {
        var seen = new ConcurrentQueue<string>();
        await using var gateway = Gateway((context, next) =>
        {
            seen.Enqueue($"{context.Request.Method} {context.Request.Path}{(string.Equals(context.Request.Headers.Upgrade, "websocket", StringComparison.OrdinalIgnoreCase) ? " ws" : "")}");
            return next();
        });
        using var http = gateway.Client();
        var session = NewSessionId();

        using (var watcher = await SessionWatcher.OpenAsync(http, session))
        {
            Assert.Contains($"GET /api/sessions/{session}/events", seen);
        }

        foreach (var skipNegotiation in new[] { false, true })
        {
            await using var hub = new HubConnectionBuilder()
                .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o =>
                {
                    o.Transports = HttpTransportType.WebSockets;
                    o.SkipNegotiation = skipNegotiation;
                })
                .Build();
            await hub.StartAsync();
            await hub.InvokeAsync<JsonObject>("Join", session, (long?)null);
        }

        Assert.Contains("POST /hubs/sessions/negotiate", seen);
        Assert.Equal(2, seen.Count(s => s == "GET /hubs/sessions ws"));

        using var agui = await http.PostAsJsonAsync("agui", new JsonObject
        {
            ["threadId"] = session,
            ["runId"] = "r-pipeline",
            ["messages"] = new JsonArray(new JsonObject { ["id"] = "m1", ["role"] = "user", ["content"] = "hi" }),
            ["tools"] = new JsonArray(),
            ["context"] = new JsonArray(),
            ["state"] = new JsonObject(),
            ["forwardedProps"] = new JsonObject(),
        });
        Assert.Equal(200, (int)agui.StatusCode);
        Assert.Contains("POST /agui", seen);

        using var chat = await http.PostAsJsonAsync("api/chat", new JsonObject
        {
            ["id"] = session,
            ["trigger"] = "submit-message",
            ["messages"] = new JsonArray(new JsonObject { ["id"] = "u1", ["role"] = "user", ["parts"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = "hi" }) }),
        });
        Assert.Equal(200, (int)chat.StatusCode);
        Assert.EndsWith("data: [DONE]\n\n", await chat.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var resume = await http.GetAsync($"api/chat/{session}/stream");
        using var stop = await http.PostAsync($"api/chat/{session}/stop", null);
        Assert.Equal([204, 204], [(int)resume.StatusCode, (int)stop.StatusCode]);
        Assert.Contains("POST /api/chat", seen);
        Assert.Contains($"GET /api/chat/{session}/stream", seen);
        Assert.Contains($"POST /api/chat/{session}/stop", seen);

        using var models = await http.GetAsync("v1/models");
        using var completion = await http.PostAsJsonAsync("v1/chat/completions", new JsonObject
        {
            ["model"] = "sim",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }),
        });
        Assert.Equal(200, (int)completion.StatusCode);
        Assert.Contains("GET /v1/models", seen);
        Assert.Contains("POST /v1/chat/completions", seen);
    }

    [Fact]
    public async Task AMiddlewareThatRefuses_StopsEveryTransportBeforeAnyDataFlows()
    {
        await using var gateway = Gateway((context, next) =>
        {
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            return Task.CompletedTask;
        });
        using var http = gateway.Client();
        var session = NewSessionId();

        using var watch = await http.GetAsync($"api/sessions/{session}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(403, (int)watch.StatusCode);

        await using var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(http.BaseAddress!, "hubs/sessions"), o =>
            {
                o.Transports = HttpTransportType.WebSockets;
                o.SkipNegotiation = true;
            })
            .Build();
        await Assert.ThrowsAnyAsync<Exception>(() => hub.StartAsync());

        using var agui = await http.PostAsync("agui", JsonContent.Create(new JsonObject()));
        Assert.Equal(403, (int)agui.StatusCode);
        using var chat = await http.PostAsync("api/chat", JsonContent.Create(new JsonObject()));
        Assert.Equal(403, (int)chat.StatusCode);
        using var resume = await http.GetAsync($"api/chat/{session}/stream");
        Assert.Equal(403, (int)resume.StatusCode);
        using var completion = await http.PostAsync("v1/chat/completions", JsonContent.Create(new JsonObject()));
        Assert.Equal(403, (int)completion.StatusCode);
    }

    /// <summary>
    /// Agents, tools and plugins run in the gateway's process. One that blocks a thread for 500 ms must not hold up the
    /// delivery of other sessions' events: with the default socket dispatch the other watchers' p99 stays under 100 ms.
    /// </summary>
    [Fact]
    public async Task AHandlerBlockingAThreadFor500Ms_DoesNotDelayOtherWatchers()
    {
        await using var gateway = Gateway(async (context, next) =>
        {
            if (context.Request.Path == "/test/block")
            {
                Thread.Sleep(500); // a tool or plugin doing blocking work on the thread that runs it
                context.Response.StatusCode = StatusCodes.Status204NoContent;
                return;
            }

            await next();
        });
        using var http = gateway.Client();
        var session = NewSessionId();
        const int Watchers = 100;
        const int Events = 40;
        var watchers = new List<SessionWatcher>();
        for (var i = 0; i < Watchers; i++)
        {
            watchers.Add(await SessionWatcher.OpenAsync(http, session));
        }

        var delays = new ConcurrentBag<double>();
        var readers = watchers.Select(w => Task.Run(async () =>
        {
            var received = 0;
            while (received < Events)
            {
                var e = await w.NextAsync(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException("the watch ended");
                if (e.Type == "CUSTOM" && e.Str("name") == "tick")
                {
                    delays.Add(Stopwatch.GetElapsedTime(e.Data["value"]!.GetValue<long>()).TotalMilliseconds);
                    received++;
                }
            }
        })).ToList();

        using var blocker = new HttpClient { BaseAddress = http.BaseAddress };
        Task<HttpResponseMessage>? blocking = null;
        for (var i = 0; i < Events; i++)
        {
            if (i == 5)
            {
                blocking = blocker.PostAsync("test/block", null);
            }

            await PublishAsync(http, session, Custom("tick", Stopwatch.GetTimestamp()));
            await Task.Delay(25);
        }

        using (var response = await blocking!)
        {
            Assert.Equal(204, (int)response.StatusCode);
        }

        await Task.WhenAll(readers);
        foreach (var w in watchers)
        {
            w.Dispose();
        }

        var sorted = delays.Order().ToList();
        Assert.Equal(Watchers * Events, sorted.Count);
        var p99 = sorted[(int)Math.Ceiling(sorted.Count * 0.99) - 1];
        Assert.True(p99 < 100, string.Create(CultureInfo.InvariantCulture, $"delivery p99 {p99:0.0} ms while a handler blocked a thread for 500 ms (max {sorted[^1]:0.0} ms, p50 {sorted[sorted.Count / 2]:0.0}, p90 {sorted[(int)(sorted.Count * 0.9)]:0.0}, threads {ThreadPool.ThreadCount})"));
    }
}

/// <summary>Tests whose point is timing run alone, after the parallel ones, so the rest of the suite does not skew them.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingTests
{
    public const string Name = "Timing";
}
