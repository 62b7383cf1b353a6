using AiStream.Gateway.Providers;
using Microsoft.ML.Tokenizers;

namespace AiStream.Tests.Providers;

public sealed class TokenCounterTests
{
    private static readonly TokenCounter Counter = new();

    [Fact]
    public void Count_OrdinaryLongText_EqualsTheTokenizersOwnCountInOneCall()
    {
        var text = string.Concat(Enumerable.Repeat("The quick brown fox jumps over the lazy dog, twice.\n  Then it rests. ", 400));
        Assert.True(text.Length > TokenCounter.ChunkChars * 5);
        var whole = TiktokenTokenizer.CreateForModel("gpt-4o").CountTokens(text);
        Assert.Equal(whole, Counter.Count(text));
    }

    [Fact]
    public void Count_OneEnormousWord_IsCountedInPiecesCloseToTheWholeCount()
    {
        var word = new string('x', 4096);
        var whole = TiktokenTokenizer.CreateForModel("gpt-4o").CountTokens(word);
        Assert.InRange(Counter.Count(word), whole, whole + (4096 / TokenCounter.MaxRun) + 1);
    }

    [Fact]
    public void Count_ACancelledRequest_StopsBetweenPieces()
    {
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.Throws<OperationCanceledException>(() => Counter.Count(new string('x', 1_000_000), cancelled.Token));
    }
}
