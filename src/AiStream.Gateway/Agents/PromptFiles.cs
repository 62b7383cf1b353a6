using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.SemanticKernel;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace AiStream.Gateway.Agents;

/// <summary>
/// Reads one definition file. Templates are Semantic Kernel's prompt template config in YAML: the YAML is read with
/// YamlDotNet into JSON and given to <see cref="PromptTemplateConfig.FromJson(string)"/> (Semantic Kernel's own YAML
/// reader, Microsoft.SemanticKernel.Yaml, is not served here), so the keys are Semantic Kernel's: <c>name</c>,
/// <c>description</c>, <c>template</c>, <c>template_format</c>, <c>input_variables</c>, <c>execution_settings</c>.
/// Every problem is one line naming the file and the key.
/// </summary>
internal static partial class PromptFiles
{
    /// <summary>Largest definition file read, in bytes.</summary>
    public const int MaxFileBytes = 256 * 1024;

    /// <summary>Most steps an agent file may ask for.</summary>
    public const int MaxSteps = 100;

    // Variable values are user text, and the rendered prompt is one user message (never parsed for <message> tags),
    // so Semantic Kernel's HTML-encoding of values would only garble text such as "a < b".
    private static readonly KernelPromptTemplateFactory Templates = new() { AllowDangerouslySetContent = true };

    public static (PromptDefinition? Prompt, string? Error) ReadPrompt(string path, string text)
    {
        var (root, error) = ReadYaml(path, text);
        if (root is null)
        {
            return (null, error);
        }

        var name = Name(root, path, out var nameError);
        if (nameError is not null)
        {
            return (null, nameError);
        }

        if (root["template"] is not JsonValue template || template.GetValueKind() != JsonValueKind.String || template.GetValue<string>().Trim().Length == 0)
        {
            return (null, $"{path}: 'template' is required and must be text");
        }

        foreach (var key in (string[])["description", "template_format"])
        {
            if (root[key] is { } value && value.GetValueKind() != JsonValueKind.String)
            {
                return (null, $"{path}: '{key}' must be text");
            }
        }

        if (root["input_variables"] is JsonArray variables)
        {
            foreach (var variable in variables)
            {
                // Semantic Kernel takes only text defaults; a plain `default: 3` or `default: true` is meant as that text.
                if (variable is JsonObject declared && declared["default"] is JsonValue value && value.GetValueKind() is not JsonValueKind.String)
                {
                    declared["default"] = value.ToJsonString();
                }
            }
        }

        PromptTemplateConfig config;
        try
        {
            root["name"] = name;
            config = PromptTemplateConfig.FromJson(root.ToJsonString());
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException or NotSupportedException or InvalidOperationException)
        {
            return (null, $"{path}: not a Semantic Kernel prompt template config: {ex.Message}");
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var variable in config.InputVariables)
        {
            if (string.IsNullOrWhiteSpace(variable.Name) || !VariableName().IsMatch(variable.Name))
            {
                return (null, $"{path}: input variable name '{variable.Name}' must be letters, digits or _");
            }

            if (!seen.Add(variable.Name))
            {
                return (null, $"{path}: input variable '{variable.Name}' is declared twice");
            }
        }

        try
        {
            return (new PromptDefinition(name!, config, Templates.Create(config), path), null);
        }
        catch (Exception ex) when (ex is KernelException or ArgumentException or NotSupportedException)
        {
            return (null, $"{path}: the template does not compile: {ex.Message}");
        }
    }

    public static (AgentDefinition? Agent, string? Error) ReadAgent(string path, string text, Func<string, bool> toolExists, IReadOnlyList<string> toolNames, int defaultMaxSteps)
    {
        var (root, error) = ReadYaml(path, text);
        if (root is null)
        {
            return (null, error);
        }

        var name = Name(root, path, out var nameError);
        if (nameError is not null)
        {
            return (null, nameError);
        }

        foreach (var key in root.Select(p => p.Key))
        {
            if (key is not ("name" or "description" or "instructions" or "model" or "tools" or "max_steps"))
            {
                return (null, $"{path}: unknown key '{key}' (an agent has name, description, instructions, model, tools, max_steps)");
            }
        }

        if (Text(root, "instructions") is not { } instructions || instructions.Trim().Length == 0)
        {
            return (null, $"{path}: 'instructions' is required and must be text");
        }

        if (root["description"] is { } d && d.GetValueKind() != JsonValueKind.String)
        {
            return (null, $"{path}: 'description' must be text");
        }

        if (root["model"] is { } m && (m.GetValueKind() != JsonValueKind.String || m.GetValue<string>().Length == 0))
        {
            return (null, $"{path}: 'model' must be a model name");
        }

        var tools = new List<string>();
        if (root["tools"] is { } toolsNode)
        {
            if (toolsNode is not JsonArray list)
            {
                return (null, $"{path}: 'tools' must be a list of tool names");
            }

            foreach (var item in list)
            {
                if (item is not JsonValue value || value.GetValueKind() != JsonValueKind.String)
                {
                    return (null, $"{path}: 'tools' must be a list of tool names");
                }

                var tool = value.GetValue<string>();
                if (!toolExists(tool))
                {
                    return (null, $"{path}: tool '{tool}' does not exist (tools: {string.Join(", ", toolNames)})");
                }

                if (!tools.Contains(tool))
                {
                    tools.Add(tool);
                }
            }
        }

        var maxSteps = defaultMaxSteps;
        if (root["max_steps"] is { } steps)
        {
            // YAML scalars arrive as text; a step count is a whole number from 1 to MaxSteps.
            if (!int.TryParse(steps.ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out maxSteps)
                || maxSteps is < 1 or > MaxSteps)
            {
                return (null, $"{path}: 'max_steps' must be a whole number from 1 to {MaxSteps}");
            }
        }

        return (new AgentDefinition(name!, Text(root, "description"), instructions, Text(root, "model"), tools, maxSteps, path), null);
    }

    private static (JsonObject? Root, string? Error) ReadYaml(string path, string text)
    {
        if (text.Length > MaxFileBytes)
        {
            return (null, $"{path}: larger than {MaxFileBytes} bytes");
        }

        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(text));
            if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode mapping)
            {
                return (null, $"{path}: must hold one YAML mapping (key: value lines)");
            }

            return ((JsonObject)ToJson(mapping, 0)!, null);
        }
        catch (YamlException ex)
        {
            return (null, $"{path}: invalid YAML at line {ex.Start.Line}, column {ex.Start.Column}: {ex.InnerException?.Message ?? ex.Message}");
        }
        catch (InvalidDataException ex)
        {
            return (null, $"{path}: {ex.Message}");
        }
    }

    /// <summary>
    /// YAML as JSON: mappings to objects, sequences to arrays, scalars to strings, except plain (unquoted) scalars of
    /// YAML's core schema: true/false to booleans (is_required), null/~ to null, and numbers JSON can spell to numbers
    /// with their text kept (temperature 0.3; a default of 1.10 stays "1.10"). Plain scalars JSON cannot spell as a
    /// number (07, 0x1F, .5, 1_000) stay text.
    /// </summary>
    private static JsonNode? ToJson(YamlNode node, int depth)
    {
        if (depth > 32)
        {
            throw new InvalidDataException("nested deeper than 32 levels");
        }

        // The representation model resolves an alias to its anchored node, so converting would copy it at every use
        // (a few lines of aliases to aliases expand to billions of nodes): anchors are refused, and aliases with them.
        if (!node.Anchor.IsEmpty)
        {
            throw new InvalidDataException($"YAML anchors and aliases are not supported (&{node.Anchor.Value} at line {node.Start.Line})");
        }

        switch (node)
        {
            case YamlMappingNode mapping:
                var obj = new JsonObject();
                foreach (var (key, value) in mapping.Children)
                {
                    if (key is not YamlScalarNode { Value: { } name })
                    {
                        throw new InvalidDataException("every key must be plain text");
                    }

                    if (!obj.TryAdd(name, ToJson(value, depth + 1)))
                    {
                        throw new InvalidDataException($"key '{name}' appears twice");
                    }
                }

                return obj;
            case YamlSequenceNode sequence:
                return new JsonArray([.. sequence.Children.Select(c => ToJson(c, depth + 1))]);
            case YamlScalarNode scalar:
                if (scalar.Style == ScalarStyle.Plain && scalar.Value is { } plain)
                {
                    switch (plain)
                    {
                        case "true" or "True" or "TRUE":
                            return JsonValue.Create(true);
                        case "false" or "False" or "FALSE":
                            return JsonValue.Create(false);
                        case "" or "~" or "null" or "Null" or "NULL":
                            return null;
                    }

                    if (JsonNumber().IsMatch(plain)
                        && double.TryParse(plain, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var number)
                        && double.IsFinite(number))
                    {
                        return JsonNode.Parse(plain);
                    }
                }

                return JsonValue.Create(scalar.Value);
            default:
                throw new InvalidDataException("YAML aliases are not supported");
        }
    }

    private static string? Name(JsonObject root, string path, out string? error)
    {
        error = null;
        var name = root["name"] is null ? Path.GetFileNameWithoutExtension(path) : Text(root, "name");
        if (name is null || !DefinitionName().IsMatch(name))
        {
            error = $"{path}: 'name' must be 1 to 64 letters, digits, '-' or '_'";
        }

        return name;
    }

    private static string? Text(JsonObject root, string key) =>
        root[key] is JsonValue value && value.GetValueKind() == JsonValueKind.String ? value.GetValue<string>() : null;

    [GeneratedRegex(@"^[A-Za-z0-9_-]{1,64}\z")]
    public static partial Regex DefinitionName();

    [GeneratedRegex(@"^[A-Za-z_][A-Za-z0-9_]{0,63}\z")]
    private static partial Regex VariableName();

    [GeneratedRegex(@"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\z")]
    private static partial Regex JsonNumber();
}
