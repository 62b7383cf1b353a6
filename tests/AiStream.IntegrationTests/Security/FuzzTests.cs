using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using AiStream.IntegrationTests.Infrastructure;
using CsCheck;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using static AiStream.IntegrationTests.Infrastructure.Tokens;
using static AiStream.IntegrationTests.Sessions.SessionApi;

namespace AiStream.IntegrationTests.Security;

/// <summary>
/// Thousands of generated hostile inputs (ids, headers, deep and wide JSON, unicode edge cases, JSON Patch sequences
/// that grow the state, enormous prompts) against every HTTP endpoint and hub method of a gateway running as its own
/// process: no answer is a 5xx, no hub call fails with an unexpected server error, the process stays up, and its
/// memory stays bounded.
/// </summary>
public sealed class FuzzTests
{
    /// <summary>Resident memory the gateway may reach under the whole run (a patch blow-up alone reached 1.6 GB).</summary>
    private const long MaxRssBytes = 1024L * 1024 * 1024;

    [Fact]
    public async Task HostileHttpAndHubInputs_NeverAnswer5xx_AndTheGatewayStaysUpWithBoundedMemory()
    {
        var settings = AuthOn(Sim());
        settings["AiStream:Sessions:IdleCancelSeconds"] = "0";
        await using var gateway = await GatewayProcess.StartAsync(settings);
        var token = Mint("fuzzer", Grants(("*", ["admin"])), "completions admin");
        using var http = new HttpClient(new SocketsHttpHandler
        {
            MaxResponseDrainSize = 0,
            RequestHeaderEncodingSelector = (_, _) => Encoding.Latin1,
            AllowAutoRedirect = false,
        })
        {
            BaseAddress = gateway.BaseAddress,
            Timeout = TimeSpan.FromSeconds(60),
        };
        var failures = new List<string>();
        var statuses = new Dictionary<int, int>();
        string? closedWith = null;

        await Gen.Int.Select(seed => new HostileInputs(new Random(seed)).NextHttp()).SampleAsync(async probe =>
        {
            var status = await SendAsync(http, probe, token);
            lock (statuses)
            {
                statuses[status] = statuses.GetValueOrDefault(status) + 1;
            }

            if (status >= 500)
            {
                lock (failures)
                {
                    failures.Add($"{status} for {probe}");
                }
            }
        }, iter: 1_800, threads: 2, seed: Environment.GetEnvironmentVariable("AISTREAM_FUZZ_SEED"));

        await using (var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(gateway.BaseAddress, "hubs/sessions"), o =>
            {
                o.Transports = HttpTransportType.WebSockets;
                o.AccessTokenProvider = () => Task.FromResult<string?>(token);
            })
            .Build())
        {
            hub.Closed += e =>
            {
                closedWith = e?.Message;
                return Task.CompletedTask;
            };
            await hub.StartAsync();
            await Gen.Int.Select(seed => new HostileInputs(new Random(seed)).NextHub()).SampleAsync(async probe =>
            {
                var outcome = await InvokeAsync(hub, probe);
                try
                {
                    // A round trip after each probe: a connection the probe broke is found while it is still the cause.
                    await hub.InvokeAsync("Leave", "fuzz-ping");
                }
                catch (Exception)
                {
                    // The probe broke the connection: its close may reach the client's state a moment after the
                    // failed call. Judged below.
                    for (var wait = 0; wait < 200 && hub.State == HubConnectionState.Connected; wait++)
                    {
                        await Task.Delay(10);
                    }

                    if (hub.State == HubConnectionState.Connected)
                    {
                        throw;
                    }
                }

                if (hub.State != HubConnectionState.Connected)
                {
                    // SignalR's JSON hub protocol reads at most 64 levels and only valid UTF-16: a deeper message, or
                    // one with a lone surrogate, is a protocol error that closes the connection, by design (SignalR's
                    // own handling, before any hub code). Anything else that closes it is a failure.
                    var protocolError = probe.ArgumentsJson.Max(Depth) > 64 || probe.ArgumentsJson.Any(HasLoneSurrogate);
                    outcome = protocolError ? null : $"the hub connection closed ({outcome}; {closedWith})";
                    await hub.StopAsync();
                    await hub.StartAsync();
                }

                if (outcome is not null)
                {
                    lock (failures)
                    {
                        failures.Add($"{outcome} for {probe}");
                    }
                }
            }, iter: 600, threads: 1, seed: Environment.GetEnvironmentVariable("AISTREAM_FUZZ_SEED"));
            Assert.Equal(HubConnectionState.Connected, hub.State);
        }

        Assert.False(gateway.HasExited, "the gateway died; its last output:\n" + Tail(gateway.Output));
        using (var live = await http.GetAsync("healthz"))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }

        var rss = RssBytes(gateway.ProcessId);
        Assert.True(rss < MaxRssBytes, string.Create(CultureInfo.InvariantCulture, $"the gateway holds {rss / (1024 * 1024)} MiB after the run"));
        // Every status class must have been reached, or the probes are not testing what they claim.
        Assert.True(statuses.Keys.Any(s => s is >= 200 and < 300) && statuses.ContainsKey(400) && statuses.ContainsKey(401) && statuses.ContainsKey(404),
            "statuses: " + string.Join(", ", statuses.OrderBy(p => p.Key).Select(p => $"{p.Key}: {p.Value}")));
        Assert.True(failures.Count == 0, $"{failures.Count} failures, first ones:\n" + string.Join("\n", failures.OrderBy(f => f.StartsWith("500", StringComparison.Ordinal)).Take(10)) + "\n" + Tail(gateway.Output));
    }

    /// <summary>Sends a probe with the admin token unless it brings its own credential; returns the status (0: no answer).</summary>
    private static async Task<int> SendAsync(HttpClient http, HttpProbe probe, string token)
    {
        using var request = new HttpRequestMessage(new HttpMethod(probe.Method), new Uri(probe.Path.TrimStart('/'), UriKind.Relative));
        if (probe.Body is not null)
        {
            request.Content = new StringContent(probe.Body, Encoding.UTF8);
            request.Content.Headers.ContentType = probe.ContentType is null ? null : new System.Net.Http.Headers.MediaTypeHeaderValue(probe.ContentType);
        }

        if (!probe.Headers.Any(h => h.Name is "Authorization" or "X-Api-Key"))
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        }

        foreach (var (name, value) in probe.Headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var status = (int)response.StatusCode;
            if (response.Content.Headers.ContentType?.MediaType == "text/event-stream" && probe.Path.Contains("/events", StringComparison.Ordinal))
            {
                return status; // a watch: it would stream forever; the answer is what counts
            }

            var body = await response.Content.ReadAsStringAsync();
            // A stream that failed says so in an error event; the gateway's own fault would be a 5xx-type error.
            return body.Contains("\"server_error\"", StringComparison.Ordinal) && status < 500 ? 599 : status;
        }
        catch (HttpRequestException e) when (e.InnerException is IOException)
        {
            // The gateway may close a connection on a malformed request (Kestrel's 400 path); the process is checked later.
            return 0;
        }
    }

    /// <summary>Null when the hub answered or refused deliberately; the failure otherwise.</summary>
    private static async Task<string?> InvokeAsync(HubConnection hub, HubProbe probe)
    {
        if (probe.Method.Length == 0 || probe.ArgumentsJson.Sum(a => a.Length) > 30_000)
        {
            return null; // no client sends an unnamed method; over 32 KB SignalR closes the connection by design
        }

        object?[] args;
        try
        {
            args = [.. probe.ArgumentsJson.Select(json => (object?)JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 100_000 }).RootElement.Clone())];
        }
        catch (JsonException)
        {
            return null; // not JSON: nothing a client library would send
        }

        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await hub.InvokeCoreAsync(probe.Method, typeof(JsonElement?), args, timeout.Token);
            return null;
        }
        catch (HubException e) when (!(e.Message.StartsWith("An unexpected error", StringComparison.Ordinal) && e.Message.EndsWith("on the server.", StringComparison.Ordinal)))
        {
            // A refusal: the hub threw a HubException (its message follows "on the server.") or SignalR could not bind
            // the arguments ("Failed to invoke"). "An unexpected error … on the server." alone is any other exception:
            // the hub's 5xx.
            return null;
        }
        catch (JsonException)
        {
            return null; // the client could not serialize it (a lone surrogate): nothing was sent
        }
        catch (Exception e)
        {
            return $"{e.GetType().Name}: {e.Message}";
        }
    }

    /// <summary>Whether a JSON text escapes a surrogate that is not half of a pair.</summary>
    private static bool HasLoneSurrogate(string json) =>
        System.Text.RegularExpressions.Regex.IsMatch(
            System.Text.RegularExpressions.Regex.Replace(json, @"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}", ""),
            @"\\u[dD][89a-fA-F][0-9a-fA-F]{2}");

    /// <summary>The deepest nesting of arrays and objects in a JSON text (outside strings).</summary>
    private static int Depth(string json)
    {
        int depth = 0, max = 0;
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var c = json[i];
            if (inString)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == '"')
                {
                    inString = false;
                }
            }
            else if (c == '"')
            {
                inString = true;
            }
            else if (c is '[' or '{')
            {
                max = Math.Max(max, ++depth);
            }
            else if (c is ']' or '}')
            {
                depth--;
            }
        }

        return max;
    }

    private static long RssBytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }

    private static string Tail(string output) => output.Length <= 4000 ? output : output[^4000..];
}
