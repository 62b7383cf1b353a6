using AiStream.Gateway.Providers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace AiStream.Tests.Providers;

public sealed class AiStreamOptionsValidatorTests
{
    [Fact]
    public void Validate_ValidConfiguration_Succeeds()
    {
        var options = Valid();

        var result = Validate(options);

        Assert.True(result.Succeeded, result.FailureMessage);
        Assert.Null(result.Failures);
    }

    [Fact]
    public void Validate_UnknownType_FailsNamingTypeKey()
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = "Bogus" };

        var failure = Assert.Single(Failures(options));

        Assert.StartsWith("AiStream:Providers:x:Type 'Bogus' is unknown", failure, StringComparison.Ordinal);
        Assert.Contains("OpenAI, AzureOpenAI, OpenAICompatible, Simulated", failure, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("  ")]
    public void Validate_MissingType_FailsNamingTypeKey(string? type)
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = type };

        var failure = Assert.Single(Failures(options));

        Assert.StartsWith("AiStream:Providers:x:Type is required", failure, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("AzureOpenAI", "k")]
    [InlineData("OpenAICompatible", null)]
    public void Validate_MissingEndpoint_FailsNamingEndpointKey(string type, string? apiKey)
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = type, ApiKey = apiKey };

        var failure = Assert.Single(Failures(options));

        Assert.Equal($"AiStream:Providers:x:Endpoint is required for a provider of type {type}.", failure);
    }

    [Fact]
    public void Validate_TypeInOtherCase_IsNormalisedAndStillRequiresEndpoint()
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = "azureopenai", ApiKey = "k" };

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:Providers:x:Endpoint is required for a provider of type AzureOpenAI.", failure);
        Assert.Equal(ProviderTypes.AzureOpenAI, options.Providers["x"].Type);
    }

    [Theory]
    [InlineData("not a url")]
    [InlineData("/v1")]
    [InlineData("ftp://models.example.com/v1")]
    public void Validate_EndpointNotHttpUrl_FailsNamingEndpointKey(string endpoint)
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = ProviderTypes.OpenAICompatible, Endpoint = endpoint };

        var failure = Assert.Single(Failures(options));

        Assert.Equal($"AiStream:Providers:x:Endpoint '{endpoint}' is not an absolute http or https URL.", failure);
    }

    [Fact]
    public void Validate_OutOfRangeTuning_FailsNamingEachKey()
    {
        var options = Valid();
        options.Providers["openai"].MaxRetries = 11;
        options.Providers["openai"].BreakerFailureRatio = 0;
        options.Models["gpt"].IdleTimeoutSeconds = 0;

        var failures = Failures(options);

        Assert.Collection(
            failures,
            f => Assert.Equal("AiStream:Providers:openai:MaxRetries must be between 0 and 10.", f),
            f => Assert.Equal("AiStream:Providers:openai:BreakerFailureRatio must be in (0, 1].", f),
            f => Assert.Equal("AiStream:Models:gpt:IdleTimeoutSeconds must be more than 0.", f));
    }

    [Fact]
    public void Validate_OpenAIWithoutApiKey_FailsNamingApiKeyKey()
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = ProviderTypes.OpenAI };

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:Providers:x:ApiKey is required for a provider of type OpenAI.", failure);
    }

    [Fact]
    public void Validate_OpenAICompatibleWithoutApiKey_Succeeds()
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = ProviderTypes.OpenAICompatible, Endpoint = "http://localhost:11434/v1" };

        Assert.True(Validate(options).Succeeded);
    }

    [Fact]
    public void Validate_FallbackToUnknownModel_FailsNamingFallbackIndex()
    {
        var options = Valid();
        options.Models["gpt"].Fallbacks = ["sim", "nope"];

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:Models:gpt:Fallbacks:1 'nope' is not a configured model.", failure);
    }

    [Fact]
    public void Validate_FallbackToItself_FailsNamingFallbackIndex()
    {
        var options = Valid();
        options.Models["gpt"].Fallbacks = ["GPT"];

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:Models:gpt:Fallbacks:0 names the model itself.", failure);
    }

    [Fact]
    public void Validate_UnknownDefaultModel_FailsNamingDefaultModelKey()
    {
        var options = Valid();
        options.DefaultModel = "nope";

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:DefaultModel 'nope' is not a configured model.", failure);
    }

    [Fact]
    public void Validate_ModelOnUnknownProvider_FailsNamingProviderKey()
    {
        var options = Valid();
        options.Models["m"] = new ModelOptions { Provider = "nope" };

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:Models:m:Provider 'nope' is not a configured provider.", failure);
    }

    [Fact]
    public void Validate_ModelWithoutProvider_FailsNamingProviderKey()
    {
        var options = Valid();
        options.Models["m"] = new ModelOptions();

        var failure = Assert.Single(Failures(options));

        Assert.Equal("AiStream:Models:m:Provider is required.", failure);
    }

    [Fact]
    public void Validate_SeveralMistakes_ReportsEachOnce()
    {
        var options = Valid();
        options.Providers["x"] = new ProviderOptions { Type = "Bogus" };
        options.Providers["y"] = new ProviderOptions { Type = ProviderTypes.OpenAI };
        options.DefaultModel = "nope";

        var failures = Failures(options);

        Assert.Collection(
            failures,
            f => Assert.StartsWith("AiStream:Providers:x:Type 'Bogus' is unknown", f, StringComparison.Ordinal),
            f => Assert.StartsWith("AiStream:Providers:y:ApiKey is required", f, StringComparison.Ordinal),
            f => Assert.StartsWith("AiStream:DefaultModel 'nope'", f, StringComparison.Ordinal));
    }

    [Fact]
    public void PostConfigure_NoConfiguration_AddsBuiltInSimulatedProviderAndModel()
    {
        var options = new AiStreamOptions();

        new AiStreamOptionsSetup().PostConfigure(Options.DefaultName, options);

        var provider = Assert.Single(options.Providers);
        Assert.Equal("sim", provider.Key);
        Assert.Equal(ProviderTypes.Simulated, provider.Value.Type);
        var model = Assert.Single(options.Models);
        Assert.Equal("sim", model.Key);
        Assert.Equal("sim", model.Value.Provider);
        Assert.True(Validate(options).Succeeded);
    }

    [Fact]
    public void PostConfigure_UserDefinedSim_KeepsUserProviderAndModel()
    {
        var userProvider = new ProviderOptions { Type = ProviderTypes.OpenAICompatible, Endpoint = "http://localhost:8000/v1", TokensPerSecond = 7 };
        var userModel = new ModelOptions { Provider = "sim", UpstreamModel = "llama" };
        var options = new AiStreamOptions();
        options.Providers["SIM"] = userProvider;
        options.Models["Sim"] = userModel;

        new AiStreamOptionsSetup().PostConfigure(Options.DefaultName, options);

        Assert.Same(userProvider, Assert.Single(options.Providers).Value);
        Assert.Equal(ProviderTypes.OpenAICompatible, userProvider.Type);
        Assert.Equal(7, userProvider.TokensPerSecond);
        Assert.Same(userModel, Assert.Single(options.Models).Value);
        Assert.Equal("llama", userModel.UpstreamModel);
    }

    [Fact]
    public void PostConfigure_SimTunedWithoutType_FillsInSimulatedType()
    {
        var tuned = new ProviderOptions { TokensPerSecond = 0, TimeToFirstTokenMs = 0 };
        var options = new AiStreamOptions();
        options.Providers["sim"] = tuned;

        new AiStreamOptionsSetup().PostConfigure(Options.DefaultName, options);

        Assert.Same(tuned, options.Providers["sim"]);
        Assert.Equal(ProviderTypes.Simulated, tuned.Type);
        Assert.Equal(0, tuned.TokensPerSecond);
        Assert.True(Validate(options).Succeeded);
    }

    [Fact]
    public void Start_UnknownProviderType_ThrowsOptionsValidationExceptionNamingKey()
    {
        using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(builder =>
        {
            builder.UseEnvironment("Testing");
            builder.ConfigureLogging(logging => logging.SetMinimumLevel(LogLevel.Critical));
            builder.UseSetting("AiStream:Providers:x:Type", "Bogus");
        });

        var exception = Assert.Throws<OptionsValidationException>(() => factory.Services);

        Assert.Contains("AiStream:Providers:x:Type 'Bogus' is unknown", exception.Message, StringComparison.Ordinal);
        Assert.Equal(typeof(AiStreamOptions), exception.OptionsType);
    }

    [Fact]
    public void Start_ValidConfiguration_ResolvesValidatedOptions()
    {
        using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(builder =>
        {
            builder.UseEnvironment("Testing");
            builder.ConfigureLogging(logging => logging.SetMinimumLevel(LogLevel.Critical));
            builder.UseSetting("AiStream:Providers:up:Type", "openaicompatible");
            builder.UseSetting("AiStream:Providers:up:Endpoint", "http://127.0.0.1:9/v1");
            // Keys differ in case from the names that refer to them: binding must keep the case-insensitive dictionaries.
            builder.UseSetting("AiStream:Models:llama:Provider", "UP");
            builder.UseSetting("AiStream:DefaultModel", "LLAMA");
        });

        var options = factory.Services.GetRequiredService<IOptions<AiStreamOptions>>().Value;

        Assert.Equal("LLAMA", options.DefaultModel);
        Assert.Equal(ProviderTypes.OpenAICompatible, options.Providers["up"].Type);
        Assert.Equal(ProviderTypes.Simulated, options.Providers["sim"].Type);
        Assert.Equal(["llama", "sim"], options.Models.Keys.Order(StringComparer.Ordinal));
    }

    /// <summary>A configuration with the built-in model plus one OpenAI model; each test breaks one thing.</summary>
    private static AiStreamOptions Valid()
    {
        var options = new AiStreamOptions();
        options.Providers["openai"] = new ProviderOptions { Type = ProviderTypes.OpenAI, ApiKey = "sk-test" };
        options.Models["gpt"] = new ModelOptions { Provider = "openai", Fallbacks = ["sim"] };
        new AiStreamOptionsSetup().PostConfigure(Options.DefaultName, options);
        return options;
    }

    private static ValidateOptionsResult Validate(AiStreamOptions options) => new AiStreamOptionsValidator().Validate(Options.DefaultName, options);

    private static IEnumerable<string> Failures(AiStreamOptions options)
    {
        var result = Validate(options);
        Assert.True(result.Failed);
        return result.Failures!;
    }
}
