using System.Text.Json;
using System.Text.Json.Nodes;

namespace AiStream.Gateway.Sessions;

/// <summary>How deep and how large a session's shared state may grow (checked after every patch, not only at parse).</summary>
internal readonly record struct StateLimits(int MaxDepth, long MaxBytes)
{
    /// <summary>No limits (tests of the patch semantics).</summary>
    public static StateLimits None => new(int.MaxValue, long.MaxValue);

    public bool IsNone => MaxDepth == int.MaxValue && MaxBytes == long.MaxValue;

    public static StateLimits From(SessionsOptions options) => new(options.MaxStateDepth, options.MaxStateBytes);

    /// <summary>Null when <paramref name="state"/> is within the limits, else why not.</summary>
    public string? Check(JsonNode? state)
    {
        if (IsNone)
        {
            return null;
        }

        var (depth, bytes) = JsonSize.Measure(state, MaxDepth, MaxBytes);
        return depth > MaxDepth ? $"the state is deeper than {MaxDepth} levels (AiStream:Sessions:MaxStateDepth)"
            : bytes > MaxBytes ? $"the state is larger than {MaxBytes} bytes (AiStream:Sessions:MaxStateBytes)"
            : null;
    }
}

/// <summary>
/// The depth and approximate serialised size of a JSON tree, walked without recursion (a hostile tree cannot
/// exhaust the stack) and abandoned as soon as either passes its bound (a huge tree costs no more than the bound).
/// </summary>
internal static class JsonSize
{
    /// <summary>Depth (a scalar is 0, <c>{}</c> is 1) and bytes; once a bound is passed the values are just over it.</summary>
    public static (int Depth, long Bytes) Measure(JsonNode? root, int maxDepth, long maxBytes)
    {
        if (root is null)
        {
            return (0, 4);
        }

        var maxSeen = 0;
        long bytes = 0;
        var stack = new Stack<(JsonNode? Node, int Depth)>();
        stack.Push((root, 0));
        while (stack.Count > 0)
        {
            var (node, depth) = stack.Pop();
            switch (node)
            {
                case JsonObject o:
                    maxSeen = Math.Max(maxSeen, depth + 1);
                    bytes += 2;
                    foreach (var (name, child) in o)
                    {
                        bytes += name.Length + 4;
                        stack.Push((child, depth + 1));
                    }

                    break;
                case JsonArray a:
                    maxSeen = Math.Max(maxSeen, depth + 1);
                    bytes += 2;
                    foreach (var child in a)
                    {
                        bytes += 1;
                        stack.Push((child, depth + 1));
                    }

                    break;
                case JsonValue v:
                    bytes += v.GetValueKind() == JsonValueKind.String && v.TryGetValue<string>(out var text) ? text.Length + 2 : v.ToJsonString().Length;
                    break;
                default:
                    bytes += 4; // null
                    break;
            }

            if (maxSeen > maxDepth || bytes > maxBytes)
            {
                return (maxSeen, bytes);
            }
        }

        return (maxSeen, bytes);
    }
}

/// <summary>A batch would take the session's state past <see cref="StateLimits"/>: nothing of it was stored (a 400).</summary>
internal sealed class StateLimitExceededException(string message) : Exception(message);

/// <summary>A new session would take the node past <c>AiStream:Sessions:MaxSessions</c> (a 503 with Retry-After).</summary>
internal sealed class SessionLimitExceededException(string message) : Exception(message);

/// <summary>A member would take a session past <c>AiStream:Presence:MaxMembers</c> (a 429 with Retry-After).</summary>
internal sealed class MemberLimitExceededException(string message) : Exception(message);
