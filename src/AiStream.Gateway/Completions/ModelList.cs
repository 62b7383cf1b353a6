using System.Text.Json.Serialization;

namespace AiStream.Gateway.Completions;

/// <summary>One entry of <c>GET /v1/models</c>.</summary>
internal sealed record ModelEntry(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy);

/// <summary>The <c>GET /v1/models</c> list.</summary>
internal sealed record ModelList(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("data")] IReadOnlyList<ModelEntry> Data);

/// <summary>Source-generated serialization of the model list; nulls are left out.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelEntry))]
internal sealed partial class CompletionsJsonContext : JsonSerializerContext;
