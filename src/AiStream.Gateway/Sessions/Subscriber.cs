using System.Threading.Tasks.Sources;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// One watcher's bounded queue. Appends never wait for it: a behind subscriber gets its consecutive text deltas
/// merged, and past the hard limit it is closed with a reason (it can resume from its last position). Writers drain
/// everything queued at once and write it with one flush, holding no lock while they do.
/// <para>
/// It is also its writer's wake-up signal (<see cref="WaitAsync"/>): a reusable single-waiter signal, where a wake
/// before the wait is remembered and waiting allocates nothing, so waking a subscriber per token costs no garbage.
/// Hand-written because SemaphoreSlim allocates a task per wait. Every idle watcher holds one subscriber, so it is kept
/// to one object: the signal is inside it rather than beside it, the queue is allocated on the first event, and it
/// locks itself rather than a <see cref="Lock"/> of its own (no other code locks a subscriber); together about 180
/// bytes less per watcher.
/// </para>
/// </summary>
internal sealed class Subscriber(int coalesceThreshold, int hardLimit) : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _signaled;
    private bool _waiting;
    // Empty until the first event: most watchers are idle or keep up (it grows when needed).
    private SessionEvent[] _ring = [];
    private int _head;
    private int _count;
    private bool _heartbeatDue;

    /// <summary>Why the subscriber was closed, when it was closed by the gateway (for example it fell behind).</summary>
    public string? CloseReason { get; private set; }

    public bool IsClosed { get; private set; }

    /// <summary>Only events of this run are wanted (the AG-UI endpoint streams its own run).</summary>
    public string? RunFilter { get; private set; }

    /// <summary>
    /// Wants the session's active run from its start, whichever it is (a resumed AI SDK chat stream): the log sets
    /// <see cref="RunFilter"/> when it registers the subscriber, under the lock its appends take.
    /// </summary>
    public bool FollowsActiveRun { get; init; }

    /// <summary>Only events of <paramref name="runId"/> from now on; set before the subscriber is registered.</summary>
    public Subscriber ForRun(string runId)
    {
        RunFilter = runId;
        return this;
    }

    /// <summary>Events merged away while this subscriber was behind.</summary>
    public long Coalesced { get; private set; }

    /// <summary>Queues an event and wakes the writer; returns false when the subscriber is closed.</summary>
    public bool Enqueue(SessionEvent e)
    {
        var open = EnqueueQuietly(e);
        Signal(inline: false);
        return open;
    }

    /// <summary>
    /// Queues an event without waking the writer; the caller wakes it with <see cref="Wake"/> once it holds no lock
    /// (<see cref="SubscriberWakeups"/>). Returns false when the subscriber is closed.
    /// </summary>
    public bool EnqueueQuietly(SessionEvent e)
    {
        if (RunFilter is not null && e.RunId != RunFilter)
        {
            return !IsClosed;
        }

        lock (this)
        {
            if (IsClosed)
            {
                return false;
            }

            if (_count >= coalesceThreshold && e.Type == AgUi.TextMessageContent && _count > 0)
            {
                ref var last = ref _ring[(_head + _count - 1) % _ring.Length];
                if (last.Type == AgUi.TextMessageContent && last.MessageId == e.MessageId && last.AcceptsMoreText)
                {
                    last = last.MergeWith(e);
                    Coalesced++;
                    return true;
                }
            }

            if (_count >= hardLimit)
            {
                IsClosed = true;
                CloseReason = $"The subscriber fell {_count} events behind and was disconnected; resume after seq {LastQueuedSeqLocked()}.";
            }
            else
            {
                if (_count == _ring.Length)
                {
                    Grow();
                }

                _ring[(_head + _count) % _ring.Length] = e;
                _count++;
            }
        }

        return !IsClosed;
    }

    /// <summary>
    /// Wakes the writer. With <paramref name="inline"/> a writer waiting for events runs on this thread until it
    /// waits again (it writes and flushes what is queued), which is what <see cref="SubscriberWakeups"/> wants.
    /// </summary>
    public void Wake(bool inline = false) => Signal(inline);

    /// <summary>Asks the writer to send a heartbeat if nothing else wakes it.</summary>
    public void RequestHeartbeat()
    {
        lock (this)
        {
            _heartbeatDue = true;
        }

        Signal(inline: false);
    }

    /// <summary>Closes the subscriber (the client left); the writer wakes and stops.</summary>
    public void Close(string? reason = null)
    {
        lock (this)
        {
            if (IsClosed)
            {
                return;
            }

            IsClosed = true;
            CloseReason ??= reason;
        }

        Signal(inline: false);
    }

    /// <summary>
    /// Waits until something is queued, then moves everything queued into <paramref name="batch"/>. Returns false once
    /// the subscriber is closed and drained; <c>Heartbeat</c> says a heartbeat is due.
    /// </summary>
    public async ValueTask<(bool Open, bool Heartbeat)> DrainAsync(List<SessionEvent> batch)
    {
        while (true)
        {
            if (TryDrain(batch) is { } drained)
            {
                return drained;
            }

            await WaitAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The two halves of <see cref="DrainAsync"/>, for the delivery loops: takes what is queued without waiting, or
    /// returns null when there is nothing yet (then <see cref="WaitAsync"/> and try again). An async method that
    /// suspends allocates its state machine on every call, so a loop awaiting <see cref="DrainAsync"/> allocated once per
    /// delivered event per watcher; awaiting <see cref="WaitAsync"/> from the loop's own (long-lived) frame allocates
    /// nothing.
    /// </summary>
    public (bool Open, bool Heartbeat)? TryDrain(List<SessionEvent> batch)
    {
        lock (this)
        {
            var due = _heartbeatDue;
            _heartbeatDue = false;
            while (_count > 0)
            {
                batch.Add(_ring[_head]);
                _ring[_head] = null!;
                _head = (_head + 1) % _ring.Length;
                _count--;
            }

            if (batch.Count > 0 || due)
            {
                return (true, due);
            }

            return IsClosed ? (false, false) : null;
        }
    }

    /// <summary>Completes when something was queued, a heartbeat is due or the subscriber closed since the last wait.</summary>
    public ValueTask WaitAsync()
    {
        lock (this)
        {
            if (_signaled)
            {
                _signaled = false;
                return ValueTask.CompletedTask;
            }

            _core.Reset();
            _waiting = true;
            return new ValueTask(this, _core.Version);
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>Wakes the waiter, or remembers the wake for the next wait; with <paramref name="inline"/> the waiter runs on this thread.</summary>
    private void Signal(bool inline)
    {
        lock (this)
        {
            if (!_waiting)
            {
                _signaled = true;
                return;
            }

            _waiting = false;
        }

        // Only this thread completes this wait (it cleared _waiting), so the flag is ours until SetResult returns.
        _core.RunContinuationsAsynchronously = !inline;
        _core.SetResult(true);
    }

    private long LastQueuedSeqLocked() => _count == 0 ? 0 : _ring[(_head + _count - 1) % _ring.Length].Seq;

    private void Grow()
    {
        var bigger = new SessionEvent[Math.Max(4, _ring.Length * 2)];
        for (var i = 0; i < _count; i++)
        {
            bigger[i] = _ring[(_head + i) % _ring.Length];
        }

        _ring = bigger;
        _head = 0;
    }
}

/// <summary>
/// Wakes the writers of the subscribers that an append reached, after the session's lock is released. Writers are
/// woken in groups: one thread-pool work item per <see cref="GroupSize"/> writers, each running its writers inline
/// (drain, write, flush, and with Kestrel's inline scheduling the send itself) one after the other. Compared with
/// one thread-pool hand-off per writer per event, a token to 1,000 watchers costs 32 hand-offs instead of 1,000,
/// while the groups still spread over every core.
/// </summary>
internal static class SubscriberWakeups
{
    /// <summary>Writers per work item: about 30 socket sends, a fraction of a millisecond.</summary>
    public const int GroupSize = 32;

    /// <summary>Wakes them; the array is not changed afterwards (the session hands out a fresh one when its set changes).</summary>
    public static void Wake(Subscriber[]? subscribers)
    {
        if (subscribers is null)
        {
            return;
        }

        for (var start = 0; start < subscribers.Length; start += GroupSize)
        {
            ThreadPool.UnsafeQueueUserWorkItem(new Group(subscribers, start, Math.Min(GroupSize, subscribers.Length - start)), preferLocal: false);
        }
    }

    private sealed class Group(Subscriber[] subscribers, int start, int count) : IThreadPoolWorkItem
    {
        public void Execute()
        {
            for (var i = start; i < start + count; i++)
            {
                subscribers[i].Wake(inline: true);
            }
        }
    }
}
