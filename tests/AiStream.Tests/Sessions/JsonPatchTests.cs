using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;

namespace AiStream.Tests.Sessions;

public sealed class JsonPatchTests
{
    private static JsonNode? Apply(string document, string patch)
    {
        Assert.True(JsonPatch.TryApply(JsonNode.Parse(document), (JsonArray)JsonNode.Parse(patch)!, out var result));
        return result;
    }

    [Theory]
    [InlineData("""{"a":1}""", """[{"op":"add","path":"/b","value":2}]""", """{"a":1,"b":2}""")]
    [InlineData("""{"a":[1,3]}""", """[{"op":"add","path":"/a/1","value":2}]""", """{"a":[1,2,3]}""")]
    [InlineData("""{"a":[1]}""", """[{"op":"add","path":"/a/-","value":2}]""", """{"a":[1,2]}""")]
    [InlineData("""{"a":1,"b":2}""", """[{"op":"remove","path":"/a"}]""", """{"b":2}""")]
    [InlineData("""{"a":{"b":1}}""", """[{"op":"replace","path":"/a/b","value":"x"}]""", """{"a":{"b":"x"}}""")]
    [InlineData("""{"a":1}""", """[{"op":"move","from":"/a","path":"/c"}]""", """{"c":1}""")]
    [InlineData("""{"a":{"x":1}}""", """[{"op":"copy","from":"/a","path":"/b"}]""", """{"a":{"x":1},"b":{"x":1}}""")]
    [InlineData("""{"a/b":1,"m~n":2}""", """[{"op":"replace","path":"/a~1b","value":3},{"op":"remove","path":"/m~0n"}]""", """{"a/b":3}""")]
    [InlineData("""{"a":1}""", """[{"op":"test","path":"/a","value":1},{"op":"add","path":"/ok","value":true}]""", """{"a":1,"ok":true}""")]
    [InlineData("""{"a":1}""", """[{"op":"replace","path":"","value":[1]}]""", """[1]""")]
    public void TryApply_Rfc6902Operations_ProduceTheExpectedDocument(string document, string patch, string expected)
    {
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), Apply(document, patch)));
    }

    [Theory]
    [InlineData("""[{"op":"remove","path":"/missing"}]""")]
    [InlineData("""[{"op":"add","path":"/a/b/c","value":1}]""")]
    [InlineData("""[{"op":"test","path":"/a","value":2}]""")]
    [InlineData("""[{"op":"add","path":"no-slash","value":1}]""")]
    [InlineData("""[{"op":"add","path":"/list/9","value":1}]""")]
    public void TryApply_FailingOperation_LeavesTheDocumentUnchanged(string patch)
    {
        var document = JsonNode.Parse("""{"a":1,"list":[0]}""");

        Assert.False(JsonPatch.TryApply(document, (JsonArray)JsonNode.Parse(patch)!, out var result));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"a":1,"list":[0]}"""), result));
    }

    [Theory]
    [InlineData("""[{"path":"/a"}]""")]
    [InlineData("""[{"op":"explode","path":"/a"}]""")]
    [InlineData("""[{"op":"add","path":"/a"}]""")]
    [InlineData("""[{"op":"move","path":"/a"}]""")]
    [InlineData("""[1]""")]
    public void Check_MalformedOperation_NamesIt(string patch)
    {
        Assert.StartsWith("'delta[0]'", JsonPatch.Check((JsonArray)JsonNode.Parse(patch)!), StringComparison.Ordinal);
    }
}
