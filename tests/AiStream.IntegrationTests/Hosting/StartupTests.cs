using System.Net;
using System.Net.Sockets;
using AiStream.IntegrationTests.Infrastructure;

namespace AiStream.IntegrationTests.Hosting;

/// <summary>Starting the gateway from a command line: failures an operator can fix are one line and exit code 1.</summary>
public sealed class StartupTests
{
    [Fact]
    public async Task APortInUse_IsOneLineOnStderr_AndExitCode1()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var (code, output, error) = await GatewayProcess.RunUntilExitAsync(new Dictionary<string, string?>(), port);

        Assert.Equal(1, code);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("aistream: ", line, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", line, StringComparison.Ordinal);
        Assert.Contains("address already in use", line, StringComparison.Ordinal);
        Assert.Contains("--urls", line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("AiStream:Limits:MessagesPerSecond", "-5")]
    [InlineData("AiStream:Auth:Jwt:SigningKey", "too-short")]
    [InlineData("AiStream:Providers:x:Type", "Bogus")]
    public async Task AnInvalidSetting_IsOneLineNamingTheKey_AndExitCode1(string key, string value)
    {
        var (code, output, error) = await GatewayProcess.RunUntilExitAsync(new Dictionary<string, string?> { [key] = value }, ChildProcesses.FreePort());

        Assert.Equal(1, code);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("aistream: invalid configuration: ", line, StringComparison.Ordinal);
        Assert.Contains(key, line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartedFromAnotherFolder_ServesItsWebPage()
    {
        var elsewhere = Directory.CreateTempSubdirectory("aistream-cwd-");
        try
        {
            await using var gateway = await GatewayProcess.StartAsync(new Dictionary<string, string?>(), workingDirectory: elsewhere.FullName);
            using var http = gateway.CreateClient();
            using var page = await http.GetAsync("/");
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Contains("<html", await page.Content.ReadAsStringAsync(), StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            elsewhere.Delete(recursive: true);
        }
    }
}
