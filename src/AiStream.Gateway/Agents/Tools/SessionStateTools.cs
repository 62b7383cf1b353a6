using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using Microsoft.SemanticKernel;

namespace AiStream.Gateway.Agents.Tools;

/// <summary>
/// Built-in tools: read and write the session's shared state. A write is a JSON Patch applied through the run, so it
/// becomes a <c>STATE_DELTA</c> every watcher sees, within the session's state limits.
/// </summary>
internal sealed class SessionStateTools
{
    /// <summary>Where a run's <see cref="RunToolContext"/> sits in the per-run kernel's data.</summary>
    public const string ContextKey = "aistream.run";

    [KernelFunction("read_state")]
    [Description("Reads the session's shared state (JSON). Give a JSON Pointer such as \"/todo\" to read one part, or nothing for all of it.")]
    public static async Task<string> ReadStateAsync(Kernel kernel, [Description("JSON Pointer to read, e.g. \"/notes\"; empty for the whole state.")] string? path = null,
        CancellationToken cancellationToken = default)
    {
        var state = await Context(kernel).ReadStateAsync(cancellationToken).ConfigureAwait(false);
        var node = string.IsNullOrEmpty(path) ? state : Resolve(state, path);
        return node?.ToJsonString() ?? "null";
    }

    [KernelFunction("write_state")]
    [Description("Sets one value in the session's shared state, which everyone in the session sees at once.")]
    public static async Task<string> WriteStateAsync(Kernel kernel,
        [Description("JSON Pointer of the value to set, e.g. \"/title\" or \"/todo/-\" to append to a list.")] string path,
        [Description("The value as JSON (e.g. \"\\\"text\\\"\", 42, {\"done\":true}); text that is not JSON is stored as a string.")] string value,
        CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrEmpty(path) || path[0] != '/')
        {
            throw new ArgumentException("'path' must be a JSON Pointer starting with '/'.", nameof(path));
        }

        JsonNode? parsed;
        try
        {
            parsed = JsonNode.Parse(value);
        }
        catch (JsonException)
        {
            parsed = JsonValue.Create(value);
        }

        var patch = new JsonArray(new JsonObject { ["op"] = "add", ["path"] = path, ["value"] = parsed });
        if (await Context(kernel).PatchStateAsync(patch, cancellationToken).ConfigureAwait(false) is { } error)
        {
            throw new ArgumentException("The state was not changed: " + error, nameof(path));
        }

        return $"Set {path} to {parsed?.ToJsonString() ?? "null"}.";
    }

    private static RunToolContext Context(Kernel kernel) =>
        kernel.Data.TryGetValue(ContextKey, out var context) && context is RunToolContext run ? run
            : throw new ArgumentException("The session state is only available to a run in a session.");

    private static JsonNode? Resolve(JsonNode? node, string pointer)
    {
        if (pointer[0] != '/')
        {
            throw new ArgumentException("'path' must be a JSON Pointer starting with '/'.", nameof(pointer));
        }

        foreach (var raw in pointer[1..].Split('/'))
        {
            var token = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            node = node switch
            {
                JsonObject obj => obj[token],
                JsonArray array when int.TryParse(token, out var index) && index >= 0 && index < array.Count => array[index],
                _ => null,
            };
            if (node is null)
            {
                return null;
            }
        }

        return node;
    }
}
