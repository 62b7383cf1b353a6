using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace AiStream.LoadTest.Scenarios.Proxy;

/// <summary>
/// A fast OpenAI-compatible upstream on loopback Kestrel: every streamed chat completion is the same 64
/// <c>chat.completion.chunk</c> frames of one token each (pre-rendered), a usage chunk when the request asked for it,
/// and <c>data: [DONE]</c>, with a fixed gap between chunks. It costs as little as it can so the figures are the
/// proxy's.
/// </summary>
internal sealed class MockUpstream : IAsyncDisposable
{
    public const int Chunks = 64;

    private static readonly byte[] First = Frame("""{"id":"chatcmpl-loadtest","object":"chat.completion.chunk","created":1795900000,"model":"mock-model","choices":[{"index":0,"delta":{"role":"assistant","content":"tok "},"finish_reason":null}]}""");
    private static readonly byte[] Middle = Frame("""{"id":"chatcmpl-loadtest","object":"chat.completion.chunk","created":1795900000,"model":"mock-model","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}""");
    private static readonly byte[] Last = Frame("""{"id":"chatcmpl-loadtest","object":"chat.completion.chunk","created":1795900000,"model":"mock-model","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":"stop"}]}""");
    private static readonly byte[] Usage = Frame("""{"id":"chatcmpl-loadtest","object":"chat.completion.chunk","created":1795900000,"model":"mock-model","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":64,"total_tokens":72}}""");
    private static readonly byte[] Done = Frame("[DONE]");
    private static readonly string Completion =
        "{\"id\":\"chatcmpl-loadtest\",\"object\":\"chat.completion\",\"created\":1795900000,\"model\":\"mock-model\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\""
        + string.Concat(Enumerable.Repeat("tok ", Chunks))
        + "\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":64,\"total_tokens\":72}}";

    private readonly WebApplication _app;
    private long _streams;

    private MockUpstream(WebApplication app, int gapMs)
    {
        _app = app;
        GapMs = gapMs;
    }

    /// <summary>The base address, <c>http://127.0.0.1:port/</c>; the API is under <c>v1/</c>.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Milliseconds between two chunks; 0 writes them back to back (each still flushed on its own).</summary>
    public int GapMs { get; set; }

    public long Streams => Interlocked.Read(ref _streams);

    public static async Task<MockUpstream> StartAsync(int gapMs, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o => o.Limits.MaxConcurrentConnections = null);
        builder.WebHost.UseUrls(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}"));
        var app = builder.Build();
        var mock = new MockUpstream(app, gapMs);
        app.MapPost("/v1/chat/completions", mock.CompleteAsync);
        app.MapGet("/v1/models", () => Microsoft.AspNetCore.Http.Results.Text("""{"object":"list","data":[{"id":"mock-model","object":"model","owned_by":"loadtest"}]}""", "application/json"));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        mock.BaseAddress = new Uri(address.TrimEnd('/') + "/");
        return mock;
    }

    private async Task CompleteAsync(HttpContext context)
    {
        bool stream;
        bool usage;
        using (var body = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted))
        {
            var root = body.RootElement;
            stream = root.TryGetProperty("stream", out var s) && s.ValueKind == JsonValueKind.True;
            usage = root.TryGetProperty("stream_options", out var o) && o.ValueKind == JsonValueKind.Object
                && o.TryGetProperty("include_usage", out var u) && u.ValueKind == JsonValueKind.True;
        }

        if (!stream)
        {
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(Completion, context.RequestAborted);
            return;
        }

        Interlocked.Increment(ref _streams);
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        var aborted = context.RequestAborted;
        var gap = GapMs;
        for (var i = 0; i < Chunks; i++)
        {
            if (i > 0 && gap > 0)
            {
                await Task.Delay(gap, aborted);
            }

            await response.Body.WriteAsync(i == 0 ? First : i == Chunks - 1 ? Last : Middle, aborted);
            await response.Body.FlushAsync(aborted);
        }

        if (usage)
        {
            await response.Body.WriteAsync(Usage, aborted);
        }

        await response.Body.WriteAsync(Done, aborted);
        await response.Body.FlushAsync(aborted);
    }

    private static byte[] Frame(string data) => Encoding.UTF8.GetBytes("data: " + data + "\n\n");

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
