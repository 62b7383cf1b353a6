using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>One session: its bounded log, projection, subscribers and remembered idempotency keys, behind one lock.</summary>
internal sealed class SessionLog(SessionsOptions options, TimeProvider time, int presenceSnapshotCap = 100)
{
    private readonly Lock _lock = new();
    private readonly LinkedList<SessionEvent> _events = new();
    private readonly SessionProjection _projection = new(StateLimits.From(options), options.MaxEvents, options.MaxLogBytes);
    private readonly List<Subscriber> _subscribers = [];
    // The subscribers as an array handed to the wake-ups after each append; rebuilt only when the set changes, so an
    // append allocates no list per event. Null after any change to _subscribers.
    private Subscriber[]? _wakeList;
    private readonly Dictionary<string, (long[] Seqs, DateTimeOffset At)> _idempotency = new(StringComparer.Ordinal);
    private long _head;
    private long _bytes; // serialised bytes of the events in _events
    private DateTimeOffset _lastActivity = time.GetUtcNow();

    public int Watchers
    {
        get
        {
            lock (_lock)
            {
                return _subscribers.Count(s => !s.IsClosed);
            }
        }
    }

    /// <summary>The last position in this log.</summary>
    public long Head
    {
        get
        {
            lock (_lock)
            {
                return _head;
            }
        }
    }

    /// <summary>False when the projection misses history (a mirror loaded after the shared log was trimmed past its checkpoint).</summary>
    public bool Complete { get; private set; } = true;

    public AppendResult Append(IReadOnlyList<JsonObject> bodies, string? runId, string? idempotencyKey)
    {
        var appended = new SessionEvent[bodies.Count];
        Subscriber[]? wake;
        lock (_lock)
        {
            var now = time.GetUtcNow();
            _lastActivity = now;
            if (idempotencyKey is not null)
            {
                ForgetOldKeys(now);
                if (_idempotency.TryGetValue(idempotencyKey, out var earlier))
                {
                    return new AppendResult([], true, earlier.Seqs);
                }
            }

            if (_projection.CheckState(bodies) is { } stateError)
            {
                throw new StateLimitExceededException(stateError);
            }

            var timestamp = now.ToUnixTimeMilliseconds();
            for (var i = 0; i < bodies.Count; i++)
            {
                var e = SessionEvent.Create(bodies[i], ++_head, timestamp, runId);
                _projection.Apply(e.Type, bodies[i], runId);
                AddEvent(e);
                appended[i] = e;
            }

            if (idempotencyKey is not null)
            {
                _idempotency[idempotencyKey] = (appended.Select(e => e.Seq).ToArray(), now);
            }

            wake = PublishLocked(appended, now);
        }

        SubscriberWakeups.Wake(wake);
        return new AppendResult(appended, false, appended.Select(e => e.Seq).ToArray());
    }

    /// <summary>Throws <see cref="StateLimitExceededException"/> when the batch would take the state past its limits.</summary>
    public void CheckState(IReadOnlyList<JsonObject> bodies)
    {
        lock (_lock)
        {
            if (_projection.CheckState(bodies) is { } stateError)
            {
                throw new StateLimitExceededException(stateError);
            }
        }
    }

    /// <summary>
    /// Adds events that already have their positions (assigned by a shared log), in order. Events at or below the head
    /// are skipped, so a batch seen twice (its writer's own echo) is applied once. The caller guarantees no gap.
    /// </summary>
    public void ApplyStored(IReadOnlyList<(SessionEvent Event, JsonObject Body)> events)
    {
        Subscriber[]? wake = null;
        lock (_lock)
        {
            var now = time.GetUtcNow();
            _lastActivity = now;
            List<SessionEvent>? fresh = null;
            foreach (var (e, body) in events)
            {
                if (e.Seq <= _head)
                {
                    continue;
                }

                _head = e.Seq;
                _projection.Apply(e.Type, body, e.RunId);
                AddEvent(e);
                (fresh ??= []).Add(e);
            }

            if (fresh is not null)
            {
                wake = PublishLocked(fresh, now);
            }
        }

        SubscriberWakeups.Wake(wake);
    }

    /// <summary>Starts an empty log from a checkpoint: the projection at <paramref name="seq"/>, no events yet.</summary>
    public void Restore(long seq, IEnumerable<(JsonObject Body, string? RunId)> checkpoint, bool complete)
    {
        lock (_lock)
        {
            foreach (var (body, runId) in checkpoint)
            {
                _projection.Apply(body["type"]!.GetValue<string>(), body, runId);
            }

            _head = seq;
            Complete = complete;
        }
    }

    /// <summary>
    /// Puts events up to the head (already summarised by the restored projection) back into the replay window, so a
    /// resume from before a checkpoint is still a replay. Only right after <see cref="Restore"/>.
    /// </summary>
    public void RestoreHistory(IReadOnlyList<SessionEvent> history)
    {
        lock (_lock)
        {
            if (_events.Count == 0 && history.Count > 0 && history[^1].Seq == _head)
            {
                foreach (var e in history)
                {
                    AddEvent(e);
                }

                Trim(time.GetUtcNow());
            }
        }
    }

    /// <summary>The whole projection at the head (presence uncapped): what a shared log stores so snapshots survive trimming.</summary>
    public (long Seq, List<(JsonObject Body, string? RunId)> Events) Checkpoint()
    {
        lock (_lock)
        {
            return (_head, _projection.Snapshot(int.MaxValue).ToList());
        }
    }

    /// <summary>
    /// Takes over <paramref name="old"/>'s subscribers after a gap that could not be filled: each gets
    /// <paramref name="notice"/> and then this log's catch-up snapshot, so it never silently misses events.
    /// </summary>
    public void TakeOver(SessionLog old, JsonObject notice)
    {
        List<Subscriber> moved;
        lock (old._lock)
        {
            moved = [.. old._subscribers];
            old._subscribers.Clear();
            old._wakeList = null;
        }

        lock (_lock)
        {
            var timestamp = time.GetUtcNow().ToUnixTimeMilliseconds();
            var catchUp = new List<SessionEvent> { SessionEvent.Create(notice, _head, timestamp, null) };
            catchUp.AddRange(_projection.Snapshot(presenceSnapshotCap).Select(s => SessionEvent.Create(s.Body, _head, timestamp, s.RunId)));
            foreach (var subscriber in moved)
            {
                if (subscriber.RunFilter is not null)
                {
                    // A run's own stream (AG-UI, AI SDK) cannot take a snapshot in the middle of its run: it would
                    // repeat the run's text, and the run's end may be in the gap. It ends with the reason; the client
                    // resumes (the AI SDK's resume replays the run from its start).
                    subscriber.Close("The session's log skipped events on this node (stream.gap); resume the run.");
                    continue;
                }

                foreach (var e in catchUp)
                {
                    subscriber.Enqueue(e);
                }

                _subscribers.Add(subscriber);
            }

            _wakeList = null;
        }
    }

    /// <summary>Like <see cref="TakeOver"/> but without a notice or snapshot: for a log that replaces an empty one.</summary>
    public void TakeOverQuietly(SessionLog old)
    {
        lock (old._lock)
        {
            lock (_lock)
            {
                _subscribers.AddRange(old._subscribers);
                old._subscribers.Clear();
                _wakeList = null;
                old._wakeList = null;
            }
        }
    }

    /// <summary>Text messages of a run still open (started, not ended).</summary>
    public IReadOnlyList<string> OpenMessages(string runId)
    {
        lock (_lock)
        {
            return _projection.OpenMessageIds(runId);
        }
    }

    public void Touch()
    {
        lock (_lock)
        {
            _lastActivity = time.GetUtcNow();
        }
    }

    /// <summary>Active runs according to the log.</summary>
    public IReadOnlyList<string> ActiveRuns()
    {
        lock (_lock)
        {
            return [.. _projection.ActiveRuns];
        }
    }

    /// <summary>True when nothing is subscribed and nothing happened for <paramref name="idle"/>.</summary>
    public bool IsUnused(TimeSpan idle)
    {
        lock (_lock)
        {
            return _subscribers.Count == 0 && time.GetUtcNow() - _lastActivity > idle;
        }
    }

    /// <summary>Queues the events for every subscriber; returns the writers to wake once the lock is released.</summary>
    private Subscriber[]? PublishLocked(IReadOnlyList<SessionEvent> appended, DateTimeOffset now)
    {
        Trim(now);

        // Queue for every subscriber inside the lock so that each sees the log's order; queuing never blocks and
        // never touches a socket. Waking the writers (which write to sockets) waits until the lock is released.
        var closed = false;
        var wake = _subscribers.Count == 0 ? null : _wakeList ??= [.. _subscribers];
        foreach (var subscriber in _subscribers)
        {
            foreach (var e in appended)
            {
                if (!subscriber.EnqueueQuietly(e))
                {
                    closed = true;
                    break;
                }
            }
        }

        if (closed)
        {
            // The array returned still holds the closed ones: they are woken too, so that their writers end.
            _subscribers.RemoveAll(s => s.IsClosed);
            _wakeList = null;
        }

        return wake;
    }

    public SubscribeResult Subscribe(long? afterSeq, Subscriber subscriber)
    {
        lock (_lock)
        {
            _lastActivity = time.GetUtcNow();
            if (subscriber.FollowsActiveRun)
            {
                return SubscribeToActiveRunLocked(subscriber);
            }

            _subscribers.Add(subscriber);
            _wakeList = null;
            if (afterSeq is null && subscriber.RunFilter is not null)
            {
                // A run's own stream, subscribed before the run starts: it wants the run's events only, not a catch-up.
                return new SubscribeResult([], _head, false);
            }

            var first = _events.First?.Value.Seq ?? _head + 1;
            if (afterSeq is { } after && after >= first - 1 && after <= _head && _head - after <= options.MaxReplayEvents)
            {
                var replay = new List<SessionEvent>((int)(_head - after));
                for (var node = _events.Last; node is not null && node.Value.Seq > after; node = node.Previous)
                {
                    replay.Add(node.Value);
                }

                replay.Reverse();
                return new SubscribeResult(replay, _head, false);
            }

            // New, too far behind, or from a log this process never had: a synthesized catch-up at the head's position.
            var timestamp = time.GetUtcNow().ToUnixTimeMilliseconds();
            var snapshot = _projection.Snapshot(presenceSnapshotCap).Select(s => SessionEvent.Create(s.Body, _head, timestamp, s.RunId)).ToList();
            return new SubscribeResult(snapshot, _head, true);
        }
    }

    /// <summary>
    /// Registers a subscriber to the newest run in progress and returns that run's events from its RUN_STARTED: a
    /// replay when the log still holds its start, else the catch-up snapshot's part about the run (its steps so far,
    /// its open text and tool calls). Nothing is registered when no run is in progress.
    /// </summary>
    private SubscribeResult SubscribeToActiveRunLocked(Subscriber subscriber)
    {
        if (_projection.NewestOwnRun() is not { } runId)
        {
            return new SubscribeResult([], _head, false);
        }

        _subscribers.Add(subscriber.ForRun(runId));
        _wakeList = null;
        // The run's start, if the window still has it and the replay is no longer than any other replay may be.
        LinkedListNode<SessionEvent>? start = null;
        for (var node = _events.Last; node is not null && _head - node.Value.Seq < options.MaxReplayEvents; node = node.Previous)
        {
            if (node.Value.Type == AgUi.RunStarted && node.Value.RunId == runId)
            {
                start = node;
                break;
            }
        }

        if (start is not null)
        {
            var replay = new List<SessionEvent>();
            for (var node = start; node is not null; node = node.Next)
            {
                if (node.Value.RunId == runId)
                {
                    replay.Add(node.Value);
                }
            }

            return new SubscribeResult(replay, _head, false) { Run = runId };
        }

        var timestamp = time.GetUtcNow().ToUnixTimeMilliseconds();
        var snapshot = _projection.Snapshot(0).Where(s => s.RunId == runId).Select(s => SessionEvent.Create(s.Body, _head, timestamp, s.RunId)).ToList();
        return new SubscribeResult(snapshot, _head, true) { Run = runId };
    }

    public void Unsubscribe(Subscriber subscriber)
    {
        lock (_lock)
        {
            _subscribers.Remove(subscriber);
            _wakeList = null;
            _lastActivity = time.GetUtcNow();
        }

        subscriber.Close();
    }

    public JsonNode? State()
    {
        lock (_lock)
        {
            return _projection.State?.DeepClone();
        }
    }

    public IReadOnlyList<JsonObject> Messages()
    {
        lock (_lock)
        {
            return _projection.Messages.Select(m => (JsonObject)m.DeepClone()).ToList();
        }
    }

    public bool HasMessage(string id)
    {
        lock (_lock)
        {
            return _projection.HasMessage(id);
        }
    }

    public SessionInfo Info(string sessionId)
    {
        lock (_lock)
        {
            return new SessionInfo(sessionId, _head, _events.First?.Value.Seq ?? _head + 1,
                _subscribers.Count(s => !s.IsClosed), _projection.ActiveRuns.ToList()) { GatewayRuns = _projection.OwnRuns };
        }
    }

    public bool IsIdle(TimeSpan idle)
    {
        lock (_lock)
        {
            return _subscribers.Count == 0 && _projection.ActiveRuns.Count == 0 && time.GetUtcNow() - _lastActivity > idle;
        }
    }

    private void AddEvent(SessionEvent e)
    {
        _events.AddLast(e);
        _bytes += e.Json.Length;
    }

    /// <summary>Drops the oldest events past the count, age and byte bounds; the projection still summarises them.</summary>
    private void Trim(DateTimeOffset now)
    {
        var oldest = (now - TimeSpan.FromMinutes(options.MaxEventAgeMinutes)).ToUnixTimeMilliseconds();
        while (_events.First is { } first
            && (_events.Count > options.MaxEvents || first.Value.AppendedAt < oldest || (_bytes > options.MaxLogBytes && _events.Count > 1)))
        {
            _bytes -= first.Value.Json.Length;
            _events.RemoveFirst();
        }
    }

    private void ForgetOldKeys(DateTimeOffset now)
    {
        if (_idempotency.Count == 0)
        {
            return;
        }

        var ttl = TimeSpan.FromMinutes(options.IdempotencyKeyMinutes);
        foreach (var key in _idempotency.Where(k => now - k.Value.At > ttl).Select(k => k.Key).ToList())
        {
            _idempotency.Remove(key);
        }
    }
}
