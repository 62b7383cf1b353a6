using System.ComponentModel.DataAnnotations;

namespace AiStream.Gateway.Agents;

/// <summary>The <c>AiStream:Agents</c> section.</summary>
public sealed class AgentsOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Agents";

    /// <summary>
    /// The folder holding prompt templates (<c>*.yaml</c>) and agents (<c>agents/*.yaml</c>); relative paths are under
    /// the content root. Default <c>prompts</c> (the repository's <c>prompts/</c>, copied beside the gateway).
    /// </summary>
    [Required]
    public string PromptsPath { get; set; } = "prompts";

    /// <summary>Whether edits to the folder are picked up while running. Default true.</summary>
    public bool Reload { get; set; } = true;

    /// <summary>
    /// Whether to poll the folder for changes (every 4 seconds) instead of relying on file system events; for mounts
    /// where events do not arrive (some network and container volume mounts). Default false.
    /// </summary>
    public bool PollForChanges { get; set; }

    /// <summary>How long edits settle before the folder is read again, in milliseconds. Default 300.</summary>
    [Range(0, 60_000)]
    public int ReloadDelayMilliseconds { get; set; } = 300;

    /// <summary>The step limit of an agent whose file gives none. Default 8.</summary>
    [Range(1, 100)]
    public int DefaultMaxSteps { get; set; } = 8;

    /// <summary>Most each tool call may take, in seconds; past it the call fails and the model sees the error. Default 30.</summary>
    [Range(1, 3600)]
    public double ToolTimeoutSeconds { get; set; } = 30;

    /// <summary>Largest tool result the model and the log see, in characters; longer results are cut. Default 16384.</summary>
    [Range(64, 1024 * 1024)]
    public int MaxToolResultChars { get; set; } = 16 * 1024;
}
