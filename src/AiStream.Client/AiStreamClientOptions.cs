namespace AiStream.Client;

/// <summary>How an <see cref="AiStreamClient"/> reaches the gateway and retries.</summary>
public sealed class AiStreamClientOptions
{
    /// <summary>The gateway, e.g. <c>http://localhost:5000/</c>.</summary>
    public required Uri BaseAddress { get; init; }

    /// <summary>
    /// Gives the bearer token (a JWT or an API key) for each request and each reconnect, so a refreshed token is used as
    /// soon as there is one; null sends none (authentication off).
    /// </summary>
    public Func<CancellationToken, ValueTask<string?>>? AccessToken { get; init; }

    /// <summary>The first reconnect or retry waits up to this (full jitter); each next doubles. Default 250 ms.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Longest wait between two attempts. Default 5 s.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Attempts of one publish, start or cancel before it fails. Default 6.</summary>
    public int MaxAttempts { get; init; } = 6;

    /// <summary>Randomness for jitter; tests may fix it.</summary>
    public Random Random { get; init; } = Random.Shared;

    /// <summary>The time source for waits.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>A wait before attempt <paramref name="attempt"/> (from 1): exponential backoff with full jitter.</summary>
    internal TimeSpan Backoff(int attempt)
    {
        var cap = Math.Min(MaxBackoff.TotalMilliseconds, InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30)));
        return TimeSpan.FromMilliseconds(Random.NextDouble() * cap);
    }
}

/// <summary>Who the watch is, as a presence member, and where it starts.</summary>
public sealed class WatchOptions
{
    /// <summary>The member id (the same on every tab of one person); the gateway makes one when null.</summary>
    public string? ClientId { get; init; }

    /// <summary>The member's display name.</summary>
    public string? Name { get; init; }

    /// <summary>The member's colour, e.g. <c>#3b82f6</c>.</summary>
    public string? Color { get; init; }

    /// <summary>Resume after this position; null starts with a catch-up snapshot.</summary>
    public long? After { get; init; }

    /// <summary>Told each time the connection state changes.</summary>
    public Action<ConnectionState>? OnStateChanged { get; init; }
}
