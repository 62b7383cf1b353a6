using System.Text.Json;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Providers;

/// <summary>Tool-call arguments as models send them: compact JSON on one line.</summary>
internal static class ToolArguments
{
    public static readonly JsonSerializerOptions CompactJson = new(AIJsonUtilities.DefaultOptions) { WriteIndented = false };

    /// <summary>The arguments of a call, <c>{}</c> when it has none.</summary>
    public static string Serialize(IDictionary<string, object?>? arguments) =>
        JsonSerializer.Serialize(arguments ?? new Dictionary<string, object?>(), CompactJson);
}
