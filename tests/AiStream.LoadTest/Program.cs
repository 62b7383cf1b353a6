using AiStream.LoadTest.Scenarios.Catchup;
using AiStream.LoadTest.Scenarios.Cluster;
using AiStream.LoadTest.Scenarios.Connections;
using AiStream.LoadTest.Scenarios.Fanout;
using AiStream.LoadTest.Scenarios.Proxy;
using Spectre.Console.Cli;

if (!Spectre.Console.AnsiConsole.Profile.Capabilities.Interactive)
{
    // Redirected output (CI logs, the smoke tests) would otherwise wrap the results table at 80 columns.
    Spectre.Console.AnsiConsole.Profile.Width = 220;
}

// The first Ctrl+C cancels the run (the scenario stops its clients and child processes); a second one ends the tool.
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = !cancel.IsCancellationRequested;
    cancel.Cancel();
};

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("aistream-loadtest");
    config.PropagateExceptions();
    config.AddCommand<ProxyCommand>("proxy")
        .WithDescription("Streamed completions through the gateway vs straight to the same mock upstream (and nginx as the floor).");
    config.AddCommand<FanoutCommand>("fanout")
        .WithDescription("One session, N watchers over SSE and SignalR: publish-to-receive latency, loss, CPU per event (and Nchan).");
    config.AddCommand<CatchupCommand>("catchup")
        .WithDescription("A 10,000-event session: a new watcher's catch-up snapshot vs replaying the whole log.");
    config.AddCommand<ConnectionsCommand>("connections")
        .WithDescription("N idle SSE watchers, then N SignalR connections: the gateway's memory per connection.");
    config.AddCommand<ClusterCommand>("cluster")
        .WithDescription("Two gateway nodes on one redis-server, watchers split across them: cross-node latency and Redis CPU, vs one node.");
});

try
{
    return await app.RunAsync(args, cancel.Token);
}
catch (CommandAppException e)
{
    Spectre.Console.AnsiConsole.MarkupLineInterpolated($"[red]{e.Message}[/]");
    return 1;
}
catch (Exception e) when (e is not OutOfMemoryException)
{
    Spectre.Console.AnsiConsole.WriteException(e, Spectre.Console.ExceptionFormats.ShortenEverything);
    return 2;
}
