using AiStream.Gateway.Security;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Limits;

/// <summary>
/// Daily token budgets per user or key (<c>AiStream:Limits:DailyTokens</c>, or the key's own
/// <c>AiStream:Auth:ApiKeys:&lt;name&gt;:DailyTokens</c>). Admission reserves the prompt's tokens plus the most the
/// answer may use before the upstream is called, and the request that would cross the budget is refused there, so the
/// upstream never sees it; the reservation is settled to the real count when the completion or run ends. Counted per
/// node, in memory; the day is the UTC day.
/// </summary>
internal sealed class TokenBudget(IOptions<LimitsOptions> limits, IOptions<AuthOptions> auth, TimeProvider time, LimitsMetrics metrics)
{
    private readonly Dictionary<string, Account> _accounts = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

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
    public (Reservation? Reservation, TimeSpan RetryAfter) TryReserve(CallerGrants caller, string fallbackKey, long tokens)
    {
        var budget = BudgetOf(caller);
        if (budget == 0)
        {
            return (Reservation.None, TimeSpan.Zero);
        }

        var now = time.GetUtcNow();
        var day = DateOnly.FromDateTime(now.UtcDateTime);
        var accountKey = caller.LimitKey ?? fallbackKey;
        lock (_lock)
        {
            if (_accounts.Count > 10_000)
            {
                // Yesterday's accounts are worth nothing; drop them rather than grow with every caller ever seen.
                foreach (var stale in _accounts.Where(a => a.Value.Day != day).Select(a => a.Key).ToList())
                {
                    _accounts.Remove(stale);
                }
            }

            if (!_accounts.TryGetValue(accountKey, out var account) || account.Day != day)
            {
                account = new Account { Day = day };
                _accounts[accountKey] = account;
            }

            if (account.Used + tokens > budget)
            {
                metrics.Refused("daily_tokens");
                var midnight = new DateTimeOffset(day.AddDays(1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
                return (null, midnight - now);
            }

            account.Used += tokens;
            return (new Reservation(this, account, tokens), TimeSpan.Zero);
        }
    }

    private void Settle(Account account, long reserved, long actual)
    {
        lock (_lock)
        {
            account.Used = Math.Max(0, account.Used + actual - reserved);
        }
    }

    /// <summary>One caller's tokens of one day.</summary>
    internal sealed class Account
    {
        public DateOnly Day { get; init; }
        public long Used { get; set; }
    }

    /// <summary>Tokens held for one request until it settles; settling twice, or after the day turned, changes nothing.</summary>
    internal sealed class Reservation
    {
        private readonly TokenBudget? _owner;
        private readonly Account? _account;
        private readonly long _reserved;
        private int _settled;

        private Reservation()
        {
        }

        public Reservation(TokenBudget owner, Account account, long reserved)
        {
            _owner = owner;
            _account = account;
            _reserved = reserved;
        }

        /// <summary>Nothing to settle: the caller has no budget.</summary>
        public static Reservation None { get; } = new();

        /// <summary>Replaces the reservation with what was really used (0 when the upstream was never reached).</summary>
        public void Settle(long actual)
        {
            if (_owner is not null && Interlocked.Exchange(ref _settled, 1) == 0)
            {
                _owner.Settle(_account!, _reserved, actual);
            }
        }
    }
}
