using System.Text.Json;
using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>
/// RFC 6902 JSON Patch over <see cref="JsonNode"/>, for <c>STATE_DELTA</c>. Written here because the ASP.NET JSON
/// Patch packages apply patches to typed models, while session state is schemaless JSON.
/// </summary>
internal static class JsonPatch
{
    private static readonly HashSet<string> Ops = ["add", "remove", "replace", "move", "copy", "test"];

    /// <summary>Checks the shape of a patch; returns an error or null.</summary>
    public static string? Check(JsonArray operations)
    {
        for (var i = 0; i < operations.Count; i++)
        {
            if (operations[i] is not JsonObject op || op["op"] is not JsonValue name || name.GetValueKind() != JsonValueKind.String
                || !Ops.Contains(name.GetValue<string>()) || op["path"] is not JsonValue path || path.GetValueKind() != JsonValueKind.String)
            {
                return $"'delta[{i}]' must be a JSON Patch operation with 'op' and 'path'";
            }

            var kind = name.GetValue<string>();
            if (kind is "add" or "replace" or "test" && !op.ContainsKey("value"))
            {
                return $"'delta[{i}]' ({kind}) needs 'value'";
            }

            if (kind is "move" or "copy" && (op["from"] is not JsonValue from || from.GetValueKind() != JsonValueKind.String))
            {
                return $"'delta[{i}]' ({kind}) needs 'from'";
            }
        }

        return null;
    }

    /// <summary>Applies <paramref name="operations"/> to a copy of <paramref name="document"/>; false (and the original kept) when an operation fails.</summary>
    public static bool TryApply(JsonNode? document, JsonArray operations, out JsonNode? result)
    {
        result = document?.DeepClone();
        try
        {
            foreach (var op in operations.OfType<JsonObject>())
            {
                var path = op["path"]!.GetValue<string>();
                switch (op["op"]!.GetValue<string>())
                {
                    case "add":
                        result = Add(result, path, op["value"]?.DeepClone());
                        break;
                    case "remove":
                        result = Remove(result, path, out _);
                        break;
                    case "replace":
                        result = Remove(result, path, out _);
                        result = Add(result, path, op["value"]?.DeepClone());
                        break;
                    case "move":
                        result = Remove(result, op["from"]!.GetValue<string>(), out var moved);
                        result = Add(result, path, moved);
                        break;
                    case "copy":
                        result = Add(result, path, Get(result, op["from"]!.GetValue<string>())?.DeepClone());
                        break;
                    case "test":
                        if (!JsonNode.DeepEquals(Get(result, path), op["value"]))
                        {
                            return false;
                        }

                        break;
                }
            }

            return true;
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException or FormatException or KeyNotFoundException)
        {
            result = document;
            return false;
        }
    }

    private static string[] Tokens(string path)
    {
        if (path.Length == 0)
        {
            return [];
        }

        if (path[0] != '/')
        {
            throw new FormatException($"JSON pointer '{path}' must start with '/'.");
        }

        return path[1..].Split('/').Select(t => t.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)).ToArray();
    }

    private static JsonNode? Get(JsonNode? root, string path)
    {
        var node = root;
        foreach (var token in Tokens(path))
        {
            node = node switch
            {
                JsonObject o => o.TryGetPropertyValue(token, out var child) ? child : throw new KeyNotFoundException(token),
                JsonArray a => a[Index(a, token, allowEnd: false)],
                _ => throw new KeyNotFoundException(token),
            };
        }

        return node;
    }

    private static JsonNode? Add(JsonNode? root, string path, JsonNode? value)
    {
        var tokens = Tokens(path);
        if (tokens.Length == 0)
        {
            return value;
        }

        var parent = Get(root, ParentPath(tokens));
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject o:
                o[last] = value;
                break;
            case JsonArray a:
                a.Insert(Index(a, last, allowEnd: true), value);
                break;
            default:
                throw new KeyNotFoundException(path);
        }

        return root;
    }

    private static JsonNode? Remove(JsonNode? root, string path, out JsonNode? removed)
    {
        var tokens = Tokens(path);
        if (tokens.Length == 0)
        {
            removed = root;
            return null;
        }

        var parent = Get(root, ParentPath(tokens));
        var last = tokens[^1];
        switch (parent)
        {
            case JsonObject o:
                if (!o.TryGetPropertyValue(last, out removed))
                {
                    throw new KeyNotFoundException(path);
                }

                o.Remove(last);
                break;
            case JsonArray a:
                var index = Index(a, last, allowEnd: false);
                removed = a[index];
                a.RemoveAt(index);
                break;
            default:
                throw new KeyNotFoundException(path);
        }

        if (removed is not null && removed.Parent is not null)
        {
            removed = removed.DeepClone();
        }

        return root;
    }

    private static string ParentPath(string[] tokens) =>
        tokens.Length == 1 ? string.Empty : "/" + string.Join('/', tokens[..^1].Select(t => t.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal)));

    private static int Index(JsonArray array, string token, bool allowEnd)
    {
        if (allowEnd && token == "-")
        {
            return array.Count;
        }

        if (!int.TryParse(token, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var index)
            || index > array.Count || (!allowEnd && index == array.Count))
        {
            throw new KeyNotFoundException(token);
        }

        return index;
    }
}
