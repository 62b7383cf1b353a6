namespace AiStream.Gateway.Limits;

/// <summary>
/// Counters in fixed windows, shared by every node when Redis is configured (<c>Scaleout/RedisLimitCounter</c>) and
/// kept in this process otherwise: what runs per minute and daily token budgets are counted in.
/// </summary>
internal interface ILimitCounter
{
    /// <summary>
    /// Adds <paramref name="amount"/> to the window <paramref name="key"/> (which lasts <paramref name="window"/> from its
    /// first use) unless the total would pass <paramref name="limit"/>; true when it was added.
    /// </summary>
    ValueTask<bool> TryAddAsync(string key, long amount, long limit, TimeSpan window, CancellationToken cancellationToken);

    /// <summary>Adds <paramref name="amount"/> (negative to give back) to a window, whatever its total.</summary>
    ValueTask AddAsync(string key, long amount, TimeSpan window);
}

/// <summary>The counters of one node, in memory; windows past their end are dropped as the map grows.</summary>
internal sealed class InMemoryLimitCounter(TimeProvider time) : ILimitCounter
{
    private readonly Dictionary<string, (long Total, DateTimeOffset Ends)> _windows = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public ValueTask<bool> TryAddAsync(string key, long amount, long limit, TimeSpan window, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            var current = Current(key, window);
            if (current.Total + amount > limit)
            {
                return ValueTask.FromResult(false);
            }

            _windows[key] = (current.Total + amount, current.Ends);
            return ValueTask.FromResult(true);
        }
    }

    public ValueTask AddAsync(string key, long amount, TimeSpan window)
    {
        lock (_lock)
        {
            var current = Current(key, window);
            _windows[key] = (Math.Max(0, current.Total + amount), current.Ends);
            return ValueTask.CompletedTask;
        }
    }

    private (long Total, DateTimeOffset Ends) Current(string key, TimeSpan window)
    {
        var now = time.GetUtcNow();
        if (_windows.Count > 100_000)
        {
            foreach (var ended in _windows.Where(w => w.Value.Ends <= now).Select(w => w.Key).ToList())
            {
                _windows.Remove(ended);
            }
        }

        return _windows.TryGetValue(key, out var found) && found.Ends > now ? found : (0, now + window);
    }
}
