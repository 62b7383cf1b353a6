using System.ComponentModel;
using System.Globalization;
using Microsoft.SemanticKernel;

namespace AiStream.Gateway.Agents.Tools;

/// <summary>Built-in tool: the current time, from the gateway's <see cref="TimeProvider"/>.</summary>
internal sealed class TimeTools(TimeProvider time)
{
    [KernelFunction("current_time")]
    [Description("The current date and time in UTC, in ISO 8601, with the day of the week.")]
    public string CurrentTime()
    {
        var now = time.GetUtcNow().ToUniversalTime();
        return now.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture) + " (" + now.DayOfWeek.ToString() + ")";
    }
}
