using System.Globalization;

namespace AiStream.Testing;

/// <summary>
/// An SSE watch of <c>GET /api/sessions/{id}/events</c>, optionally as a given presence member
/// (<c>?clientId=&amp;name=&amp;color=</c>). Every event (presence, snapshots and gap notices included) and every comment
/// line is recorded in order. It is read either on demand (<see cref="NextAsync"/> and the <c>Read*</c> methods: nothing
/// is read until asked, so a test can leave a watcher stalled) or, when opened with <c>background: true</c>, by a
/// background reader, so tests wait for events (<see cref="WaitForAsync"/> and the other <c>WaitFor*</c> methods) while
/// fake time advances or nodes die. Disposing it closes the connection, as a killed client or a closed tab would.
/// </summary>
public sealed class SessionWatcher : IDisposable
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly HttpResponseMessage _response;
    private readonly SseReader _reader;
    private readonly List<WatchedEvent> _events = [];
    private readonly List<string> _comments = [];
    private readonly CancellationTokenSource? _stop;
    private readonly Task? _pump;

    private SessionWatcher(string name, HttpResponseMessage response, Stream stream, bool background)
    {
        Name = name;
        _response = response;
        _reader = new SseReader(stream);
        if (background)
        {
            _stop = new CancellationTokenSource();
            _pump = Task.Run(PumpAsync);
        }
    }

    /// <summary>A label for messages (e.g. "A" or "B-resumed"); by default the node's host and port.</summary>
    public string Name { get; }

    public HttpResponseMessage Response => _response;

    /// <summary>The client id the gateway answered in <c>X-AiStream-Client-Id</c>.</summary>
    public string ClientId => _response.Headers.GetValues("X-AiStream-Client-Id").Single();

    /// <summary>True once the stream ended (the gateway closed it, the node died, or the watch was disposed).</summary>
    public bool Ended { get; private set; }

    /// <summary>Everything received so far, presence included, in order: the positions a client resumes from.</summary>
    public List<WatchedEvent> Events
    {
        get
        {
            lock (_events)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>Everything received so far except presence events (<see cref="WatchedEvent.IsPresence"/>), in order.</summary>
    public List<WatchedEvent> Seen => Events.Where(e => !e.IsPresence).ToList();

    /// <summary>Presence joins, leaves and updates received so far, in order.</summary>
    public List<WatchedEvent> PresenceEvents => Events.Where(e => e.MemberId is not null).ToList();

    /// <summary>Comment lines (heartbeats, disconnect reasons) received so far.</summary>
    public List<string> Comments
    {
        get
        {
            lock (_events)
            {
                return [.. _comments];
            }
        }
    }

    /// <summary>The last <c>id:</c> received: what a reconnecting client sends as <c>Last-Event-ID</c>.</summary>
    public long? LastId => Events.LastOrDefault()?.Id;

    /// <summary>The position the join snapshot carried, when the watch started with one.</summary>
    public long? SnapshotHead => Events.FirstOrDefault() is { Type: "MESSAGES_SNAPSHOT" } first ? first.Id : null;

    /// <summary>The events after the join snapshot (or the whole replay), presence included.</summary>
    public List<WatchedEvent> Live => SnapshotHead is { } head ? Events.Where(e => e.Id > head).ToList() : Events;

    /// <summary>The watch's path and query: <c>api/sessions/{id}/events?clientId=&amp;name=&amp;color=&amp;after=</c>.</summary>
    public static string Url(string sessionId, string? clientId = null, string? memberName = null, string? color = null, long? after = null)
    {
        var query = new List<string>();
        if (clientId is not null)
        {
            query.Add("clientId=" + Uri.EscapeDataString(clientId));
        }

        if (memberName is not null)
        {
            query.Add("name=" + Uri.EscapeDataString(memberName));
        }

        if (color is not null)
        {
            query.Add("color=" + Uri.EscapeDataString(color));
        }

        if (after is { } a)
        {
            query.Add("after=" + a.ToString(CultureInfo.InvariantCulture));
        }

        return $"api/sessions/{sessionId}/events" + (query.Count > 0 ? "?" + string.Join('&', query) : "");
    }

    /// <summary>
    /// Opens a watch on <paramref name="http"/>'s gateway; once the headers are back the gateway has subscribed it (and
    /// made <paramref name="clientId"/> present). Throws unless the answer is a 200 event stream.
    /// </summary>
    /// <param name="name">A label for messages (<see cref="Name"/>).</param>
    /// <param name="background">Read in the background (for the <c>WaitFor*</c> methods) instead of on demand.</param>
    public static async Task<SessionWatcher> OpenAsync(HttpClient http, string sessionId, long? lastEventId = null, long? after = null,
        string? clientId = null, string? memberName = null, string? color = null, string? name = null, bool background = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Url(sessionId, clientId, memberName, color, after));
        request.Headers.Accept.ParseAdd("text/event-stream");
        if (lastEventId is { } last)
        {
            request.Headers.Add("Last-Event-ID", last.ToString(CultureInfo.InvariantCulture));
        }

        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if ((int)response.StatusCode != 200 || response.Content.Headers.ContentType?.MediaType != "text/event-stream")
        {
            var body = await response.Content.ReadAsStringAsync();
            var type = response.Content.Headers.ContentType?.MediaType;
            response.Dispose();
            throw new InvalidOperationException($"watch on {http.BaseAddress} answered {(int)response.StatusCode} ({type}): {body}");
        }

        return new SessionWatcher(name ?? http.BaseAddress?.Authority ?? "watch", response, await response.Content.ReadAsStreamAsync(), background);
    }

    /// <summary>The next event other than presence (comments and the retry hint skipped); null when the stream ended.</summary>
    public async Task<WatchedEvent?> NextAsync(TimeSpan? timeout = null)
    {
        while (true)
        {
            var e = await NextOfAnyKindAsync(timeout);
            if (e is null || !e.IsPresence)
            {
                return e;
            }
        }
    }

    /// <summary>The next event, presence included; null when the stream ended. Every event must carry its position as its id.</summary>
    public async Task<WatchedEvent?> NextOfAnyKindAsync(TimeSpan? timeout = null)
    {
        if (_pump is not null)
        {
            throw new InvalidOperationException("This watch is read in the background; wait for events with WaitForAsync.");
        }

        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (true)
        {
            List<string>? lines;
            try
            {
                lines = await _reader.NextEventAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                var seen = Seen;
                throw new TimeoutException($"No session event within {(timeout ?? DefaultTimeout).TotalSeconds} s; seen {seen.Count}, last: {seen.LastOrDefault()}");
            }

            if (lines is null)
            {
                Ended = true;
                return null;
            }

            if (Record(lines) is { } e)
            {
                return e;
            }

            if (lines.Any(l => l.StartsWith("data: ", StringComparison.Ordinal)))
            {
                throw new InvalidOperationException("An event without an id: line:\n" + string.Join("\n", lines));
            }
        }
    }

    /// <summary>Reads up to and including the first non-presence event matching <paramref name="stop"/>.</summary>
    public async Task<List<WatchedEvent>> ReadUntilAsync(Func<WatchedEvent, bool> stop, TimeSpan? timeout = null)
    {
        var events = new List<WatchedEvent>();
        while (true)
        {
            var e = await NextAsync(timeout) ?? throw new InvalidOperationException("The watch ended early; seen: " + string.Join("\n", events));
            events.Add(e);
            if (stop(e))
            {
                return events;
            }
        }
    }

    public Task<List<WatchedEvent>> ReadUntilTypeAsync(string type, TimeSpan? timeout = null) => ReadUntilAsync(e => e.Type == type, timeout);

    /// <summary>Reads the next <paramref name="count"/> non-presence events.</summary>
    public async Task<List<WatchedEvent>> ReadCountAsync(int count, TimeSpan? timeout = null)
    {
        var events = new List<WatchedEvent>(count);
        while (events.Count < count)
        {
            events.Add(await NextAsync(timeout) ?? throw new InvalidOperationException($"The watch ended after {events.Count} of {count} events."));
        }

        return events;
    }

    /// <summary>Waits for the first event, from the start of the watch, that matches; fails with what was seen.</summary>
    public async Task<WatchedEvent> WaitForAsync(Func<WatchedEvent, bool> match, string what, TimeSpan? timeout = null)
    {
        EnsureBackground();
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            if (Events.FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (Ended || DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{(Ended ? "The watch " + Name + " ended" : "Timed out on watch " + Name)} waiting for {what}; seen:\n{string.Join("\n", Events)}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits for the RUN_FINISHED or RUN_ERROR of <paramref name="runId"/>.</summary>
    public Task<WatchedEvent> WaitForRunEndAsync(string runId, TimeSpan? timeout = null) =>
        WaitForAsync(e => e.IsRunEnd && e.RunId == runId, "the end of run " + runId, timeout);

    /// <summary>Waits until the event at position <paramref name="seq"/> (or a later one) arrived.</summary>
    public Task<WatchedEvent> WaitForSeqAsync(long seq, TimeSpan? timeout = null) =>
        WaitForAsync(e => e.Seq >= seq, "position " + seq.ToString(CultureInfo.InvariantCulture), timeout);

    /// <summary>Waits until at least <paramref name="count"/> events matching <paramref name="match"/> arrived.</summary>
    public async Task<List<WatchedEvent>> WaitForCountAsync(Func<WatchedEvent, bool> match, int count, string what, TimeSpan? timeout = null)
    {
        EnsureBackground();
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (true)
        {
            var found = Events.Where(match).ToList();
            if (found.Count >= count)
            {
                return found;
            }

            if (Ended || DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{(Ended ? "The watch " + Name + " ended" : "Timed out on watch " + Name)} waiting for {count} x {what} (have {found.Count}); seen:\n{string.Join("\n", Events)}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits until the gateway (or a dead node) ended the stream.</summary>
    public async Task WaitForEndAsync(TimeSpan? timeout = null)
    {
        EnsureBackground();
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        while (!Ended)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"The watch {Name} did not end; seen:\n{string.Join("\n", Events)}");
            }

            await Task.Delay(10);
        }
    }

    private void EnsureBackground()
    {
        if (_pump is null)
        {
            throw new InvalidOperationException("This watch is read on demand; open it with background: true to wait for events.");
        }
    }

    /// <summary>Records an event's comments and, when it has data and an id, the event itself (returned).</summary>
    private WatchedEvent? Record(List<string> lines)
    {
        var id = lines.FirstOrDefault(l => l.StartsWith("id: ", StringComparison.Ordinal));
        var data = lines.FirstOrDefault(l => l.StartsWith("data: ", StringComparison.Ordinal));
        var e = data is not null && id is not null
            ? new WatchedEvent(long.Parse(id["id: ".Length..], CultureInfo.InvariantCulture), data["data: ".Length..])
            : null;
        if (e is not null && _pump is null && e.Id != e.Seq)
        {
            throw new InvalidOperationException($"The event's id {e.Id} is not its position: {e.Json}");
        }

        lock (_events)
        {
            _comments.AddRange(lines.Where(l => l.StartsWith(':')));
            if (e is not null)
            {
                _events.Add(e);
            }
        }

        return e;
    }

    private async Task PumpAsync()
    {
        try
        {
            while (await _reader.NextEventAsync(_stop!.Token) is { } lines)
            {
                Record(lines);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or HttpRequestException)
        {
            // Closed by the test, by the gateway, or the node died.
        }
        finally
        {
            Ended = true;
        }
    }

    public void Dispose()
    {
        if (_pump is not null)
        {
            _stop!.Cancel();
            _response.Dispose();
            _pump.Wait(TimeSpan.FromSeconds(5));
            _reader.Dispose();
            _stop.Dispose();
            return;
        }

        _reader.Dispose();
        _response.Dispose();
    }
}
