using System.Globalization;
using AiStream.Gateway.Security;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Limits;

/// <summary>
/// Daily token budgets per user or key (<c>AiStream:Limits:DailyTokens</c>, or the key's own
/// <c>AiStream:Auth:ApiKeys:&lt;name&gt;:DailyTokens</c>). Admission reserves the prompt's tokens plus the most the
/// answer may use before the upstream is called, and the request that would cross the budget is refused there, so the
/// upstream never sees it; the reservation is settled to the real count when the completion or run ends. Counted in
/// <see cref="ILimitCounter"/>: across nodes with Redis, per node without. The day is the UTC day.
/// </summary>
internal sealed class TokenBudget(IOptions<LimitsOptions> limits, IOptions<AuthOptions> auth, ILimitCounter counter, TimeProvider time, LimitsMetrics metrics)
{
    /// <summary>The most an answer may use when the request does not say (<c>AiStream:Limits:DefaultMaxTokens</c>).</summary>
    public int DefaultMaxTokens => limits.Value.DefaultMaxTokens;

    /// <summary>Whether the caller has a daily budget at all (so a request's tokens need counting before it runs).</summary>
    public bool Applies(CallerGrants caller) => BudgetOf(caller) > 0;

    private long BudgetOf(CallerGrants caller) =>
        caller.KeyName is { } name && auth.Value.ApiKeys.TryGetValue(name, out var key) && key.DailyTokens > 0 ? key.DailyTokens : limits.Value.DailyTokens;

    /// <summary>
    /// Reserves <paramref name="tokens"/> for the caller. Returns a reservation to settle (an empty one when the caller
    /// has no budget), or null and how long until the budget renews.
    /// </summary>
    public async ValueTask<(Reservation? Reservation, TimeSpan RetryAfter)> TryReserveAsync(CallerGrants caller, string fallbackKey, long tokens, CancellationToken cancellationToken)
    {
        var budget = BudgetOf(caller);
        if (budget == 0)
        {
            return (Reservation.None, TimeSpan.Zero);
        }

        var now = time.GetUtcNow();
        var midnight = new DateTimeOffset(now.UtcDateTime.Date.AddDays(1), TimeSpan.Zero);
        var key = string.Create(CultureInfo.InvariantCulture, $"tokens:{caller.LimitKey ?? fallbackKey}:{now.UtcDateTime:yyyyMMdd}");
        // The key names its day; the window only has to outlive it.
        var window = midnight - now + TimeSpan.FromHours(1);
        if (!await counter.TryAddAsync(key, tokens, budget, window, cancellationToken).ConfigureAwait(false))
        {
            metrics.Refused("daily_tokens");
            return (null, midnight - now);
        }

        return (new Reservation(counter, key, tokens, window), TimeSpan.Zero);
    }

    /// <summary>Tokens held for one request until it settles; settling twice changes nothing.</summary>
    internal sealed class Reservation
    {
        private readonly ILimitCounter? _counter;
        private readonly string _key = "";
        private readonly long _reserved;
        private readonly TimeSpan _window;
        private int _settled;

        private Reservation()
        {
        }

        public Reservation(ILimitCounter counter, string key, long reserved, TimeSpan window)
        {
            _counter = counter;
            _key = key;
            _reserved = reserved;
            _window = window;
        }

        /// <summary>Nothing to settle: the caller has no budget.</summary>
        public static Reservation None { get; } = new();

        /// <summary>
        /// Replaces the reservation with what was really used (0 when the upstream was never reached). It does not wait:
        /// usage is recorded as a request ends, and a counter that is away keeps the larger reservation, the safe side.
        /// </summary>
        public void Settle(long actual)
        {
            if (_counter is not null && Interlocked.Exchange(ref _settled, 1) == 0 && actual != _reserved)
            {
                _ = _counter.AddAsync(_key, actual - _reserved, _window).AsTask().ContinueWith(
                    static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
        }
    }
}
