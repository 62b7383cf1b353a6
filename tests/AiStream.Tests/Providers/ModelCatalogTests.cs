using AiStream.Gateway.Providers;
using Microsoft.Extensions.Options;

namespace AiStream.Tests.Providers;

public sealed class ModelCatalogTests
{
    [Fact]
    public void TryResolve_NameInOtherCase_ResolvesConfiguredModel()
    {
        var catalog = Catalog();

        Assert.True(catalog.TryResolve("GPT-4O", out var route));

        Assert.Equal("gpt-4o", route.Name);
        Assert.Equal("openai", route.ProviderName);
        Assert.Equal(ProviderTypes.OpenAI, route.Provider.Type);
        Assert.False(route.IsSimulated);
    }

    [Fact]
    public void TryResolve_UnknownName_ReturnsFalse()
    {
        var catalog = Catalog();

        Assert.False(catalog.TryResolve("gpt-5", out _));
    }

    [Fact]
    public void TryResolve_ProviderInOtherCase_UsesConfiguredProviderOptions()
    {
        var options = Configured();
        options.Models["mixed"] = new ModelOptions { Provider = "OPENAI" };
        var catalog = new ModelCatalog(Options.Create(options));

        Assert.True(catalog.TryResolve("mixed", out var route));

        Assert.Same(options.Providers["openai"], route.Provider);
    }

    [Fact]
    public void Candidates_WithFallbacks_ReturnsModelThenFallbacksInOrderWithoutDuplicates()
    {
        var options = Configured();
        // "Mini" and "gpt-4o" repeat earlier entries in another case; "missing" is skipped.
        options.Models["gpt-4o"].Fallbacks = ["mini", "sim", "Mini", "GPT-4O", "missing", "SIM"];
        var catalog = new ModelCatalog(Options.Create(options));
        Assert.True(catalog.TryResolve("gpt-4o", out var first));

        var candidates = catalog.Candidates(first);

        Assert.Equal(["gpt-4o", "mini", "sim"], candidates.Select(c => c.Name));
        Assert.Same(first, candidates[0]);
    }

    [Fact]
    public void Candidates_WithoutFallbacks_ReturnsOnlyTheModel()
    {
        var catalog = Catalog();
        Assert.True(catalog.TryResolve("sim", out var sim));

        var candidates = catalog.Candidates(sim);

        Assert.Same(sim, Assert.Single(candidates));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    public void TryResolve_NoUpstreamModel_DefaultsToPublicName(string? upstream)
    {
        var options = Configured();
        options.Models["gpt-4o"].UpstreamModel = upstream;
        var catalog = new ModelCatalog(Options.Create(options));

        Assert.True(catalog.TryResolve("gpt-4o", out var route));

        Assert.Equal("gpt-4o", route.UpstreamModel);
    }

    [Fact]
    public void TryResolve_UpstreamModelSet_UsesIt()
    {
        var catalog = Catalog();

        Assert.True(catalog.TryResolve("mini", out var route));

        Assert.Equal("gpt-4o-mini-2024-07-18", route.UpstreamModel);
    }

    [Fact]
    public void Constructor_ModelTimeouts_AreConvertedFromSeconds()
    {
        var catalog = Catalog();

        Assert.True(catalog.TryResolve("mini", out var route));

        Assert.Equal(TimeSpan.FromSeconds(2.5), route.TimeToFirstTokenTimeout);
        Assert.Equal(TimeSpan.FromSeconds(7), route.IdleTimeout);
        Assert.Equal(TimeSpan.FromSeconds(60), route.RequestTimeout);
    }

    [Fact]
    public void All_ReturnsEveryModelInNameOrder()
    {
        var catalog = Catalog();

        Assert.Equal(["gpt-4o", "mini", "sim"], catalog.All.Select(r => r.Name));
        Assert.Equal("sim", catalog.DefaultModel);
    }

    private static ModelCatalog Catalog() => new(Options.Create(Configured()));

    private static AiStreamOptions Configured()
    {
        var options = new AiStreamOptions();
        options.Providers["openai"] = new ProviderOptions { Type = ProviderTypes.OpenAI, ApiKey = "sk-test" };
        options.Models["gpt-4o"] = new ModelOptions { Provider = "openai", Fallbacks = ["mini"] };
        options.Models["mini"] = new ModelOptions
        {
            Provider = "openai",
            UpstreamModel = "gpt-4o-mini-2024-07-18",
            TimeToFirstTokenTimeoutSeconds = 2.5,
            IdleTimeoutSeconds = 7,
            RequestTimeoutSeconds = 60,
        };
        new AiStreamOptionsSetup().PostConfigure(Options.DefaultName, options);
        return options;
    }
}
