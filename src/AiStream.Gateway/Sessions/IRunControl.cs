namespace AiStream.Gateway.Sessions;

/// <summary>
/// Which node runs which run, so a cancel sent to any node reaches the run. On one node there is nothing to route;
/// with Redis, runs are registered per session and cancels travel on the owning node's control channel.
/// </summary>
internal interface IRunControl
{
    /// <summary>Sets what to do when another node asks this one to cancel a run; completes once this node listens.</summary>
    Task ListenAsync(Func<string, string, string, Task> cancel);

    /// <summary>Registers a run started by <paramref name="owner"/> (null: nobody in particular, authentication off).</summary>
    ValueTask RegisterAsync(string sessionId, string runId, string? owner);

    /// <summary>Who started a run another node runs; null when unknown or started anonymously.</summary>
    ValueTask<string?> OwnerElsewhereAsync(string sessionId, string runId);

    ValueTask UnregisterAsync(string sessionId, string runId);

    /// <summary>Asks the node running the run to cancel it (or ends it if that node is gone); false when no node runs it.</summary>
    ValueTask<bool> CancelElsewhereAsync(string sessionId, string runId, string reason);
}

/// <summary>One node: every run is local.</summary>
internal sealed class LocalRunControl : IRunControl
{
    public Task ListenAsync(Func<string, string, string, Task> cancel) => Task.CompletedTask;

    public ValueTask RegisterAsync(string sessionId, string runId, string? owner) => ValueTask.CompletedTask;

    public ValueTask<string?> OwnerElsewhereAsync(string sessionId, string runId) => ValueTask.FromResult<string?>(null);

    public ValueTask UnregisterAsync(string sessionId, string runId) => ValueTask.CompletedTask;

    public ValueTask<bool> CancelElsewhereAsync(string sessionId, string runId, string reason) => ValueTask.FromResult(false);
}
