using System.Text.Json;
using System.Text.Json.Nodes;
using AiStream.Gateway.Api;
using AiStream.Gateway.Providers;
using Microsoft.Extensions.AI;

namespace AiStream.Gateway.Completions;

/// <summary>
/// A validated <c>/v1/chat/completions</c> body. The JSON is kept as it came, so fields AiStream does not know
/// still reach the upstream; only <c>model</c> and <c>stream_options</c> are rewritten.
/// </summary>
internal sealed class CompletionRequest
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool", "function"];

    private CompletionRequest(JsonObject body, string model, bool stream, bool clientWantsUsage)
    {
        Body = body;
        Model = model;
        Stream = stream;
        ClientWantsUsage = clientWantsUsage;
    }

    public JsonObject Body { get; }

    /// <summary>The public model name asked for (or the default).</summary>
    public string Model { get; }

    public bool Stream { get; }

    /// <summary>The client set <c>stream_options.include_usage</c>; usage chunks are passed on only then.</summary>
    public bool ClientWantsUsage { get; }

    public static CompletionRequest? Parse(JsonNode? node, string defaultModel, out ApiError? error)
    {
        error = null;
        if (node is not JsonObject body)
        {
            error = ApiError.BadRequest("The request body must be a JSON object.");
            return null;
        }

        string model = defaultModel;
        if (body["model"] is { } modelNode)
        {
            if (modelNode.GetValueKind() != JsonValueKind.String || string.IsNullOrWhiteSpace(modelNode.GetValue<string>()))
            {
                error = ApiError.BadRequest("'model' must be a non-empty string.", "model");
                return null;
            }

            model = modelNode.GetValue<string>();
        }

        if (body["messages"] is not JsonArray messages || messages.Count == 0)
        {
            error = ApiError.BadRequest("'messages' must be a non-empty array.", "messages");
            return null;
        }

        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i] is not JsonObject message)
            {
                error = ApiError.BadRequest($"messages[{i}] must be an object.", $"messages[{i}]");
                return null;
            }

            if (message["role"] is not JsonValue role || role.GetValueKind() != JsonValueKind.String || !Roles.Contains(role.GetValue<string>()))
            {
                error = ApiError.BadRequest($"messages[{i}].role must be one of {string.Join(", ", Roles)}.", $"messages[{i}].role");
                return null;
            }

            if (message["content"] is { } content && content.GetValueKind() is not (JsonValueKind.String or JsonValueKind.Array or JsonValueKind.Null))
            {
                error = ApiError.BadRequest($"messages[{i}].content must be a string or an array of parts.", $"messages[{i}].content");
                return null;
            }
        }

        var stream = false;
        if (body["stream"] is { } streamNode)
        {
            var kind = streamNode.GetValueKind();
            if (kind is not (JsonValueKind.True or JsonValueKind.False))
            {
                error = ApiError.BadRequest("'stream' must be a boolean.", "stream");
                return null;
            }

            stream = kind == JsonValueKind.True;
        }

        var wantsUsage = false;
        if (body["stream_options"] is { } options)
        {
            if (options is not JsonObject optionsObject)
            {
                if (options.GetValueKind() != JsonValueKind.Null)
                {
                    error = ApiError.BadRequest("'stream_options' must be an object.", "stream_options");
                    return null;
                }
            }
            else if (optionsObject["include_usage"] is { } include)
            {
                if (include.GetValueKind() is not (JsonValueKind.True or JsonValueKind.False))
                {
                    error = ApiError.BadRequest("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage");
                    return null;
                }

                wantsUsage = include.GetValueKind() == JsonValueKind.True;
            }
        }

        if (body["tools"] is { } tools && tools is not JsonArray && tools.GetValueKind() != JsonValueKind.Null)
        {
            error = ApiError.BadRequest("'tools' must be an array.", "tools");
            return null;
        }

        foreach (var name in (ReadOnlySpan<string>)["max_tokens", "max_completion_tokens"])
        {
            if (body[name] is { } max && (max.GetValueKind() != JsonValueKind.Number || !max.AsValue().TryGetValue<int>(out var value) || value < 1))
            {
                error = ApiError.BadRequest($"'{name}' must be a positive integer.", name);
                return null;
            }
        }

        return new CompletionRequest(body, model, stream, wantsUsage);
    }

    /// <summary>
    /// The body sent to <paramref name="route"/>'s upstream: the model renamed and, when streaming, usage requested,
    /// so the gateway always learns the token count.
    /// </summary>
    public byte[] UpstreamBody(ModelRoute route)
    {
        Body["model"] = route.UpstreamModel;
        if (Stream)
        {
            var options = Body["stream_options"] as JsonObject ?? new JsonObject();
            options["include_usage"] = true;
            Body["stream_options"] = options;
        }
        else
        {
            // OpenAI rejects stream_options on a non-streamed request.
            Body.Remove("stream_options");
        }

        return JsonSerializer.SerializeToUtf8Bytes(Body, CompletionsNodeContext.Default.JsonObject);
    }

    /// <summary>The most tokens the answer may use, when the request says (<c>max_completion_tokens</c>, else <c>max_tokens</c>).</summary>
    public int? MaxOutputTokens =>
        Body["max_completion_tokens"] is JsonValue completion ? completion.GetValue<int>()
        : Body["max_tokens"] is JsonValue max ? max.GetValue<int>()
        : null;

    /// <summary>The tokens reserved for this request in its caller's daily budget, settled when usage is recorded.</summary>
    public Limits.TokenBudget.Reservation? Reservation { get; set; }

    /// <summary>The messages as (role, name, text) for counting prompt tokens.</summary>
    public IEnumerable<(string Role, string? Name, string Content)> MessagesForCounting()
    {
        foreach (var node in (JsonArray)Body["messages"]!)
        {
            var message = (JsonObject)node!;
            yield return (message["role"]!.GetValue<string>(), (message["name"] as JsonValue)?.ToString(), TextOf(message["content"]));
        }
    }

    public string? ToolsJson() => Body["tools"] is JsonArray tools ? tools.ToJsonString() : null;

    /// <summary>The request as Microsoft.Extensions.AI messages and options, for <see cref="IChatClient"/> providers.</summary>
    public (List<ChatMessage> Messages, ChatOptions Options) ToChat()
    {
        var messages = new List<ChatMessage>();
        foreach (var node in (JsonArray)Body["messages"]!)
        {
            var message = (JsonObject)node!;
            var role = message["role"]!.GetValue<string>();
            var text = TextOf(message["content"]);
            switch (role)
            {
                case "tool" or "function":
                    var callId = (message["tool_call_id"] as JsonValue)?.ToString() ?? string.Empty;
                    messages.Add(new ChatMessage(ChatRole.Tool, [new FunctionResultContent(callId, text)]));
                    break;
                case "assistant":
                    var assistant = new ChatMessage(ChatRole.Assistant, text);
                    if (message["tool_calls"] is JsonArray calls)
                    {
                        foreach (var call in calls.OfType<JsonObject>())
                        {
                            var id = (call["id"] as JsonValue)?.ToString() ?? string.Empty;
                            var name = ((call["function"] as JsonObject)?["name"] as JsonValue)?.ToString() ?? string.Empty;
                            assistant.Contents.Add(new FunctionCallContent(id, name));
                        }
                    }

                    messages.Add(assistant);
                    break;
                default:
                    messages.Add(new ChatMessage(role is "system" or "developer" ? ChatRole.System : ChatRole.User, text)
                    {
                        AuthorName = (message["name"] as JsonValue)?.ToString(),
                    });
                    break;
            }
        }

        var options = new ChatOptions();
        if (Body["max_completion_tokens"] is JsonValue maxCompletion)
        {
            options.MaxOutputTokens = maxCompletion.GetValue<int>();
        }
        else if (Body["max_tokens"] is JsonValue maxTokens)
        {
            options.MaxOutputTokens = maxTokens.GetValue<int>();
        }

        if (Body["tools"] is JsonArray tools)
        {
            options.Tools = [];
            foreach (var tool in tools.OfType<JsonObject>())
            {
                if (tool["function"] is JsonObject function && function["name"] is JsonValue name && name.GetValueKind() == JsonValueKind.String)
                {
                    var schema = function["parameters"] is JsonObject parameters
                        ? JsonSerializer.SerializeToElement(parameters, CompletionsNodeContext.Default.JsonObject)
                        : JsonSerializer.SerializeToElement(new JsonObject { ["type"] = "object" }, CompletionsNodeContext.Default.JsonObject);
                    options.Tools.Add(AIFunctionFactory.CreateDeclaration(name.GetValue<string>(), (function["description"] as JsonValue)?.ToString(), schema));
                }
            }
        }

        options.ToolMode = Body["tool_choice"] switch
        {
            JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() == "none" => ChatToolMode.None,
            JsonValue v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() == "required" => ChatToolMode.RequireAny,
            JsonObject o when (o["function"] as JsonObject)?["name"] is JsonValue n && n.GetValueKind() == JsonValueKind.String => ChatToolMode.RequireSpecific(n.GetValue<string>()),
            _ => ChatToolMode.Auto,
        };

        return (messages, options);
    }

    private static string TextOf(JsonNode? content) => content switch
    {
        JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>(),
        JsonArray parts => string.Join("\n", parts.OfType<JsonObject>()
            .Where(p => p["text"] is JsonValue t && t.GetValueKind() == JsonValueKind.String)
            .Select(p => p["text"]!.GetValue<string>())),
        _ => string.Empty,
    };
}

/// <summary>Source-generated serialization of JSON nodes.</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(JsonObject))]
internal sealed partial class CompletionsNodeContext : System.Text.Json.Serialization.JsonSerializerContext;
