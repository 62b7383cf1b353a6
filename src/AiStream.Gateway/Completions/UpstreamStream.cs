using AiStream.Gateway.Resilience;

namespace AiStream.Gateway.Completions;

/// <summary>
/// One attempt's stream of chunk payloads from an upstream. A watchdog (driven by <see cref="TimeProvider"/>) bounds
/// the wait for each chunk: the time-to-first-token timeout for the first, the idle timeout after. One token spans
/// the connect, the first read and the rest of the stream, which is why this is a watchdog of our own rather than a
/// Polly timeout around a single call.
/// </summary>
internal abstract class UpstreamStream : IAsyncDisposable
{
    private readonly CancellationTokenSource _watchdog;
    private readonly CancellationTokenSource _linked;
    private readonly CancellationToken _clientAborted;
    private bool _pendingFirst;

    protected UpstreamStream(TimeProvider time, CancellationToken clientAborted)
    {
        _clientAborted = clientAborted;
        _watchdog = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        _linked = CancellationTokenSource.CreateLinkedTokenSource(clientAborted, _watchdog.Token);
    }

    /// <summary>Cancelled when the client leaves or the watchdog fires; every upstream call uses it.</summary>
    protected CancellationToken Token => _linked.Token;

    /// <summary>The current chunk's JSON payload.</summary>
    public ReadOnlyMemory<byte> Current { get; protected set; }

    /// <summary>The upstream ended its stream with <c>[DONE]</c>.</summary>
    public bool SawDone { get; protected set; }

    /// <summary>Connects and reads the first chunk within <paramref name="timeToFirstToken"/>.</summary>
    public async Task OpenAsync(TimeSpan timeToFirstToken)
    {
        _watchdog.CancelAfter(timeToFirstToken);
        try
        {
            await ConnectAsync().ConfigureAwait(false);
            if (!await ReadCoreAsync().ConfigureAwait(false))
            {
                throw new UpstreamException(UpstreamFailureKind.Truncated, "The upstream ended its stream before sending anything.");
            }

            _pendingFirst = true;
        }
        catch (Exception ex) when (Translate(ex, UpstreamFailureKind.TimeToFirstToken, timeToFirstToken) is { } translated)
        {
            throw translated;
        }
    }

    /// <summary>Moves to the next chunk; false at the end of the stream. The first call yields the chunk read by <see cref="OpenAsync"/>.</summary>
    public async ValueTask<bool> ReadAsync(TimeSpan idleTimeout)
    {
        if (_pendingFirst)
        {
            _pendingFirst = false;
            return true;
        }

        _watchdog.CancelAfter(idleTimeout);
        try
        {
            return await ReadCoreAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (Translate(ex, UpstreamFailureKind.Idle, idleTimeout) is { } translated)
        {
            throw translated;
        }
    }

    /// <summary>Cancels a read still in flight and waits for it to give up, whatever it ends with.</summary>
    public async ValueTask AbandonAsync(ValueTask<bool> pendingRead)
    {
        await _watchdog.CancelAsync().ConfigureAwait(false);
        try
        {
            await pendingRead.ConfigureAwait(false);
        }
#pragma warning disable CA1031 // the caller is already failing or leaving; this read's outcome has no one to go to
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    protected abstract Task ConnectAsync();

    protected abstract ValueTask<bool> ReadCoreAsync();

    private UpstreamException? Translate(Exception ex, UpstreamFailureKind timeoutKind, TimeSpan timeout)
    {
        if (ex is UpstreamException || _clientAborted.IsCancellationRequested)
        {
            return null; // already classified, or the client left: let it through as it is
        }

        if (ex is OperationCanceledException && _watchdog.IsCancellationRequested)
        {
            return new UpstreamException(timeoutKind,
                timeoutKind == UpstreamFailureKind.TimeToFirstToken
                    ? $"No first token from the upstream within {timeout.TotalSeconds:0.###} s."
                    : $"The upstream sent nothing for {timeout.TotalSeconds:0.###} s.",
                inner: ex);
        }

        if (ex is HttpRequestException or IOException or System.Net.Sockets.SocketException)
        {
            return new UpstreamException(_pendingFirst || timeoutKind == UpstreamFailureKind.Idle ? UpstreamFailureKind.Truncated : UpstreamFailureKind.Connection,
                $"The upstream connection failed: {ex.Message}", inner: ex);
        }

        return null;
    }

    public virtual async ValueTask DisposeAsync()
    {
        await DisposeCoreAsync().ConfigureAwait(false);
        _linked.Dispose();
        _watchdog.Dispose();
        GC.SuppressFinalize(this);
    }

    protected abstract ValueTask DisposeCoreAsync();
}
