using System.Buffers;
using System.Collections;
using System.IO.Pipelines;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using AiStream.Gateway.Presence;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace AiStream.Gateway.Transports;

/// <summary>
/// A SignalR hub connection served by <see cref="LeanConnections"/>: a WebSocket (the runtime's
/// <see cref="WebSocket.CreateFromStream(Stream, WebSocketCreationOptions)"/>) on the Kestrel connection itself, handed
/// to SignalR's own <c>HubConnectionHandler</c> as a <see cref="ConnectionContext"/>, the way SignalR runs over any
/// transport (<c>UseHub</c> on a raw listener). The hub protocol, handshake, pings, client timeout, invocations and
/// groups are all SignalR's; this class only moves WebSocket messages between the socket and the hub.
/// <para>
/// Why not SignalR's WebSocket transport: that one runs inside an HTTP request that stays open for the connection's
/// life, so each idle hub connection kept Kestrel's HTTP/1.1 request state, an HttpContext with its features, the
/// request's Activity and log scopes, a pending frame per middleware and SignalR's HTTP connection object with two more
/// pipes: about half of its memory. The transport behaviour here follows SignalR's (<c>WebSocketsServerTransport</c>):
/// zero-byte reads while idle, text or binary messages as the hub protocol asks, a close frame when either side ends,
/// 5 s for the peer's close, a send that stalls for 10 s ends the connection. One difference: each batch the hub
/// flushes is sent as one WebSocket message at once (<see cref="MessageWriter"/>) instead of through a second pipe and
/// a sending loop, which saves that pipe, the loop and a thread hop per message.
/// </para>
/// </summary>
internal sealed class LeanHubConnection : ConnectionContext, IDuplexPipe, ITransferFormatFeature, IFeatureCollection
{
    /// <summary>SignalR's default for the buffer between the socket and the hub (<c>HttpConnectionDispatcherOptions</c>).</summary>
    private const int MaxBufferSize = 64 * 1024;

    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(10);

    private static readonly PipeOptions InputOptions = new(
        pauseWriterThreshold: MaxBufferSize,
        resumeWriterThreshold: MaxBufferSize / 2,
        readerScheduler: PipeScheduler.ThreadPool,
        useSynchronizationContext: false);

    private static ReadOnlySpan<byte> AcceptGuid => "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"u8;

    private readonly ConnectionContext _connection;
    private readonly TimeProvider _time;
    private readonly WebSocket _socket;
    private readonly Pipe _fromClient = new(InputOptions);
    private readonly MessageWriter _toClient;
    private FeatureCollection? _moreFeatures;
    private IDictionary<object, object?>? _items;
    private long _sendStarted;
    private volatile bool _goingAway;

    private LeanHubConnection(ConnectionContext connection, MemberIdentity identity, TimeProvider time)
    {
        _connection = connection;
        _time = time;
        Identity = identity;
        _toClient = new MessageWriter(this);
        _socket = WebSocket.CreateFromStream(new TransportStream(connection.Transport), new WebSocketCreationOptions
        {
            IsServer = true,
            // The hub sends its own pings (HubOptions.KeepAliveInterval); a WebSocket ping timer each would only add memory.
            KeepAliveInterval = TimeSpan.Zero,
        });
    }

    /// <summary>The member identity read from the upgrade request, checked as the hub checks it.</summary>
    public MemberIdentity Identity { get; }

    public override string ConnectionId
    {
        get => _connection.ConnectionId;
        set => throw new NotSupportedException();
    }

    /// <summary>
    /// This connection's own features (its pipes' transfer format, itself for the hub's identity) over the Kestrel
    /// connection's (heartbeat for the hub's pings and client timeout, lifetime notifications, endpoints).
    /// </summary>
    public override IFeatureCollection Features => this;

    public override IDictionary<object, object?> Items
    {
        get => _items ??= new ConnectionItems();
        set => _items = value;
    }

    public override IDuplexPipe Transport
    {
        get => this;
        set => throw new NotSupportedException();
    }

    public override CancellationToken ConnectionClosed
    {
        get => _connection.ConnectionClosed;
        set => throw new NotSupportedException();
    }

    public override System.Net.EndPoint? LocalEndPoint
    {
        get => _connection.LocalEndPoint;
        set => throw new NotSupportedException();
    }

    public override System.Net.EndPoint? RemoteEndPoint
    {
        get => _connection.RemoteEndPoint;
        set => throw new NotSupportedException();
    }

    PipeReader IDuplexPipe.Input => _fromClient.Reader;

    PipeWriter IDuplexPipe.Output => _toClient;

    public TransferFormat SupportedFormats => TransferFormat.Binary | TransferFormat.Text;

    public TransferFormat ActiveFormat { get; set; } = TransferFormat.Text;

    bool IFeatureCollection.IsReadOnly => false;

    int IFeatureCollection.Revision => _connection.Features.Revision + (_moreFeatures?.Revision ?? 0);

    object? IFeatureCollection.this[Type key]
    {
        get => key == typeof(ITransferFormatFeature) || key == typeof(LeanHubConnection) ? this
            : _moreFeatures?[key] ?? _connection.Features[key];
        set => (_moreFeatures ??= new FeatureCollection())[key] = value;
    }

    TFeature? IFeatureCollection.Get<TFeature>() where TFeature : default => (TFeature?)((IFeatureCollection)this)[typeof(TFeature)];

    void IFeatureCollection.Set<TFeature>(TFeature? instance) where TFeature : default => ((IFeatureCollection)this)[typeof(TFeature)] = instance;

    IEnumerator<KeyValuePair<Type, object>> IEnumerable<KeyValuePair<Type, object>>.GetEnumerator()
    {
        yield return new(typeof(ITransferFormatFeature), this);
        yield return new(typeof(LeanHubConnection), this);
        foreach (var feature in (IEnumerable<KeyValuePair<Type, object>>?)_moreFeatures ?? [])
        {
            yield return feature;
        }

        foreach (var feature in _connection.Features)
        {
            if (_moreFeatures?[feature.Key] is null)
            {
                yield return feature;
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => ((IEnumerable<KeyValuePair<Type, object>>)this).GetEnumerator();

    /// <summary>The <c>101 Switching Protocols</c> head answering <paramref name="key"/> (RFC 6455 4.2.2).</summary>
    public static byte[] SwitchingProtocols(string key, DateTimeOffset now)
    {
        Span<byte> input = stackalloc byte[24 + 36];
        Encoding.ASCII.GetBytes(key, input);
        AcceptGuid.CopyTo(input[24..]);
        // SHA-1 is what RFC 6455 prescribes for this handshake value; it protects nothing.
#pragma warning disable CA5350
        var accept = Convert.ToBase64String(SHA1.HashData(input));
#pragma warning restore CA5350
        return Encoding.ASCII.GetBytes(
            $"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nDate: {now.ToString("r", System.Globalization.CultureInfo.InvariantCulture)}\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    }

    /// <summary>
    /// Runs the hub on <paramref name="connection"/>, whose answer to the upgrade is written but not yet flushed,
    /// until either side ends it.
    /// </summary>
    public static Task RunAsync(ConnectionContext connection, MemberIdentity identity, ConnectionHandler hub, TimeProvider time, ILogger logger) =>
        new LeanHubConnection(connection, identity, time).RunAsync(hub, logger);

    private async Task RunAsync(ConnectionHandler hub, ILogger logger)
    {
        var flushed = await _connection.Transport.Output.FlushAsync();
        if (flushed.IsCompleted || flushed.IsCanceled)
        {
            return;
        }

        var receiving = ReceiveAsync();
        _connection.Features.Get<IConnectionHeartbeatFeature>()?.OnHeartbeat(static s => ((LeanHubConnection)s).CheckSend(), this);
        using var stopping = _connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested
            .Register(static s => ((LeanHubConnection)s!).GoAway(), this);
        var status = WebSocketCloseStatus.NormalClosure;
        try
        {
            await hub.OnConnectedAsync(this);
        }
        catch (Exception e)
        {
            // What SignalR's own dispatcher does with a failed hub connection: log it, close with an error status.
            LeanConnectionsLog.HubFailed(logger, ConnectionId, e);
            status = WebSocketCloseStatus.InternalServerError;
        }

        // As SignalR does when a hub connection ends: the close frame after what the hub wrote, then the peer's close.
        await _toClient.CompleteAsync();
        await _fromClient.Reader.CompleteAsync();
        await CloseOutputAsync(_goingAway ? WebSocketCloseStatus.EndpointUnavailable : status);
        if (!receiving.IsCompleted)
        {
            using var delay = new CancellationTokenSource();
            if (await Task.WhenAny(receiving, Task.Delay(CloseTimeout, _time, delay.Token)) != receiving)
            {
                // The peer did not answer the close frame.
                _socket.Abort();
            }

            await delay.CancelAsync();
        }

        _socket.Dispose();
    }

    /// <summary>WebSocket messages from the client into the hub's input.</summary>
    private async Task ReceiveAsync()
    {
        var writer = _fromClient.Writer;
        try
        {
            while (true)
            {
                // A zero-byte read first, so an idle connection holds no buffer while it waits. (Waiting on the Kestrel
                // pipe instead would save the WebSocket's pending read, but the WebSocket reads ahead into a buffer of
                // its own, so a message already there would wait for the next bytes from the client.)
                var ready = await _socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None);
                if (ready.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                var received = await _socket.ReceiveAsync(writer.GetMemory(), CancellationToken.None);
                if (received.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                writer.Advance(received.Count);
                var flushed = await writer.FlushAsync();
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception e) when (IsSocketFailure(e))
        {
            // The client went away without a close handshake, or the connection was aborted: the hub sees its input end.
        }
        finally
        {
            await writer.CompleteAsync();
        }
    }

    private async Task CloseOutputAsync(WebSocketCloseStatus status)
    {
        if (!CanSend)
        {
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(CloseTimeout, _time);
            await _socket.CloseOutputAsync(status, "", timeout.Token);
        }
        catch (Exception e) when (IsSocketFailure(e))
        {
            // Already gone.
        }
    }

    private static bool IsSocketFailure(Exception e) =>
        e is WebSocketException or OperationCanceledException or IOException or ConnectionAbortedException or ObjectDisposedException
            or InvalidOperationException; // a send or receive on a socket that another thread just closed or aborted

    private bool CanSend => _socket.State is not (WebSocketState.Aborted or WebSocketState.Closed or WebSocketState.CloseSent);

    /// <summary>On Kestrel's heartbeat (once a second): a send stuck behind a client that reads nothing ends the connection.</summary>
    private void CheckSend()
    {
        var started = Volatile.Read(ref _sendStarted);
        if (started != 0 && _time.GetElapsedTime(started) > SendTimeout)
        {
            Abort(new ConnectionAbortedException("A send to the client did not complete within 10 s."));
        }
    }

    /// <summary>
    /// The server is stopping: close the WebSocket as "going away" before the hub says goodbye, so clients with
    /// automatic reconnect reconnect (to another node) instead of taking the hub's close as final. The client's
    /// answering close then ends the hub's input, and with it the connection.
    /// </summary>
    private void GoAway()
    {
        _goingAway = true;
        _ = CloseOutputAsync(WebSocketCloseStatus.EndpointUnavailable);
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        _socket.Abort();
        _connection.Abort(abortReason);
    }

    /// <summary>
    /// The hub's output: what it writes between two flushes is buffered (a pooled array, returned after each send, so
    /// an idle connection holds none) and each flush sends it as one WebSocket message. The hub serialises its writes
    /// (one lock per connection), as it does on a pipe.
    /// </summary>
    private sealed class MessageWriter(LeanHubConnection owner) : PipeWriter
    {
        private byte[]? _buffer;
        private int _written;

        public override bool CanGetUnflushedBytes => true;

        public override long UnflushedBytes => _written;

        public override Memory<byte> GetMemory(int sizeHint = 0) => Reserve(sizeHint).AsMemory(_written);

        public override Span<byte> GetSpan(int sizeHint = 0) => Reserve(sizeHint).AsSpan(_written);

        public override void Advance(int bytes)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(bytes);
            if (_buffer is null || _written + bytes > _buffer.Length)
            {
                throw new InvalidOperationException("Advanced past the memory that was asked for.");
            }

            _written += bytes;
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            if (_buffer is null)
            {
                return new(new FlushResult(isCanceled: false, isCompleted: !owner.CanSend));
            }

            var buffer = _buffer;
            var count = _written;
            _buffer = null;
            _written = 0;
            if (count == 0 || !owner.CanSend)
            {
                // Nothing to send, or the socket is closing: what the hub still writes has nobody to go to.
                ArrayPool<byte>.Shared.Return(buffer);
                return new(new FlushResult(isCanceled: false, isCompleted: !owner.CanSend));
            }

            return SendAsync(buffer, count, cancellationToken);
        }

        private async ValueTask<FlushResult> SendAsync(byte[] buffer, int count, CancellationToken cancellationToken)
        {
            var type = owner.ActiveFormat == TransferFormat.Binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text;
            Volatile.Write(ref owner._sendStarted, owner._time.GetTimestamp());
            try
            {
                await owner._socket.SendAsync(buffer.AsMemory(0, count), type, endOfMessage: true, cancellationToken);
                return new FlushResult(isCanceled: false, isCompleted: false);
            }
            catch (OperationCanceledException)
            {
                // CancelPendingFlush (the hub aborting) or the caller's token: the message is lost with the connection.
                return new FlushResult(isCanceled: true, isCompleted: false);
            }
            catch (Exception e) when (IsSocketFailure(e))
            {
                return new FlushResult(isCanceled: false, isCompleted: true);
            }
            finally
            {
                Volatile.Write(ref owner._sendStarted, 0);
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        /// <summary>
        /// The hub calls this when it aborts the connection, to free a write stuck behind a client that reads nothing:
        /// the Kestrel write under the WebSocket send is cancelled, which fails the send and aborts the WebSocket.
        /// With no send in flight there is nothing to wake.
        /// </summary>
        public override void CancelPendingFlush()
        {
            if (Volatile.Read(ref owner._sendStarted) != 0)
            {
                owner._connection.Transport.Output.CancelPendingFlush();
            }
        }

        public override void Complete(Exception? exception = null)
        {
            if (_buffer is { } buffer)
            {
                _buffer = null;
                _written = 0;
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        private byte[] Reserve(int sizeHint)
        {
            sizeHint = Math.Max(sizeHint, 1);
            if (_buffer is null)
            {
                _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(sizeHint, 4096));
            }
            else if (_buffer.Length - _written < sizeHint)
            {
                var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _written + sizeHint));
                _buffer.AsSpan(0, _written).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = larger;
            }

            return _buffer;
        }
    }

    /// <summary>
    /// The Kestrel connection's pipes as the stream a <see cref="WebSocket"/> reads and writes. Disposing it (the
    /// WebSocket does when it is aborted) wakes a read or write pending on the pipes.
    /// </summary>
    private sealed class TransportStream(IDuplexPipe transport) : Stream
    {
        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            var input = transport.Input;
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (result.IsCanceled)
            {
                input.AdvanceTo(buffer.Start);
                throw new OperationCanceledException();
            }

            // A zero-byte read returns once bytes are there (or at the end), consuming none.
            var count = (int)Math.Min(buffer.Length, destination.Length);
            buffer.Slice(0, count).CopyTo(destination.Span);
            input.AdvanceTo(buffer.GetPosition(count));
            return count;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            var result = await transport.Output.WriteAsync(source, cancellationToken);
            if (result.IsCanceled)
            {
                throw new OperationCanceledException();
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override void Flush()
        {
        }

        // The WebSocket only reads and writes asynchronously.
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                transport.Input.CancelPendingRead();
                transport.Output.CancelPendingFlush();
            }

            base.Dispose(disposing);
        }
    }
}
