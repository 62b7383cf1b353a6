using Spectre.Console;

namespace AiStream.LoadTest.Infrastructure;

/// <summary>
/// The live progress line: a Spectre.Console spinner with the phase's counters on a terminal; a plain line every two
/// seconds when the output is redirected (CI logs, the smoke tests).
/// </summary>
internal static class LiveStatus
{
    public static async Task RunAsync(string phase, Func<string> status, Func<Task> work)
    {
        if (AnsiConsole.Profile.Capabilities.Interactive)
        {
            await AnsiConsole.Status().StartAsync(Markup.Escape(phase), async ctx =>
            {
                var task = work();
                while (!task.IsCompleted)
                {
                    ctx.Status(Markup.Escape(phase + "  " + status()));
                    await Task.WhenAny(task, Task.Delay(250));
                }

                await task;
            });
            AnsiConsole.MarkupLineInterpolated($"[green]done[/] {phase}  {status()}");
            return;
        }

        Console.WriteLine(phase);
        var running = work();
        while (!running.IsCompleted)
        {
            await Task.WhenAny(running, Task.Delay(2000));
            if (!running.IsCompleted)
            {
                Console.WriteLine("  " + status());
            }
        }

        await running;
        Console.WriteLine("  done: " + status());
    }
}
