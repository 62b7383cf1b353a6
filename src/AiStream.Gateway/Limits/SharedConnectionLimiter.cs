using System.Threading.RateLimiting;

namespace AiStream.Gateway.Limits;

/// <summary>
/// Connection slots counted by every node together (<c>Scaleout/RedisConnectionSlots</c>). Without scale-out none is
/// registered, and each node counts its own connections with the ASP.NET Core concurrency limiter.
/// </summary>
internal interface ISharedConnectionSlots
{
    /// <summary>
    /// Takes one of <paramref name="limit"/> slots of <paramref name="key"/> across the nodes; disposing the handle
    /// gives it back. Null when all are held.
    /// </summary>
    ValueTask<IDisposable?> TryTakeAsync(string key, int limit, CancellationToken cancellationToken);
}

/// <summary>
/// The rate-limiter partition of one caller's (or one address's) connections on the shared slots, so
/// <c>ConnectionsPerUser</c> and <c>ConnectionsPerIp</c> hold across nodes while staying in the standard rate-limiting
/// middleware. Taking a slot needs a round trip to Redis: the synchronous attempt declines, and the middleware then
/// awaits <see cref="RateLimiter.AcquireAsync"/>. Written here because no library limiter keeps a lease for as long as
/// a connection lasts (hours) across processes.
/// </summary>
internal sealed class SharedConnectionLimiter(string key, int limit, ISharedConnectionSlots slots, TimeProvider time) : RateLimiter
{
    private int _held;
    private long _idleSince = time.GetTimestamp();

    /// <summary>Idle (and so disposable by the partitioned limiter) only while this node holds none of its slots.</summary>
    public override TimeSpan? IdleDuration => Volatile.Read(ref _held) > 0 ? null : time.GetElapsedTime(Volatile.Read(ref _idleSince));

    public override RateLimiterStatistics? GetStatistics() => new() { CurrentAvailablePermits = Math.Max(0, limit - Volatile.Read(ref _held)) };

    protected override RateLimitLease AttemptAcquireCore(int permitCount) => permitCount == 0 ? Lease.Granted : Lease.Declined;

    protected override async ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken)
    {
        if (permitCount == 0)
        {
            return Lease.Granted;
        }

        if (await slots.TryTakeAsync(key, limit, cancellationToken).ConfigureAwait(false) is not { } slot)
        {
            return Lease.Declined;
        }

        Interlocked.Increment(ref _held);
        return new Lease(true, () =>
        {
            slot.Dispose();
            if (Interlocked.Decrement(ref _held) == 0)
            {
                Volatile.Write(ref _idleSince, time.GetTimestamp());
            }
        });
    }

    private sealed class Lease(bool acquired, Action? release) : RateLimitLease
    {
        public static readonly Lease Granted = new(true, null);
        public static readonly Lease Declined = new(false, null);
        private Action? _release = release;

        public override bool IsAcquired => acquired;

        public override IEnumerable<string> MetadataNames => [];

        public override bool TryGetMetadata(string metadataName, out object? metadata)
        {
            metadata = null;
            return false;
        }

        protected override void Dispose(bool disposing)
        {
            Interlocked.Exchange(ref _release, null)?.Invoke();
            base.Dispose(disposing);
        }
    }
}
