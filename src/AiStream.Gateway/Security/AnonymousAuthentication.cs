using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Security;

/// <summary>
/// The scheme when no credential is configured (the embedded default): every request is an anonymous caller with every
/// right, so the same authorization checks run either way and turning authentication on changes only who passes.
/// </summary>
internal sealed class AnonymousAuthentication(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    /// <summary>The scheme's name.</summary>
    public const string SchemeName = "AiStreamAnonymous";

    /// <summary>Claim marking the anonymous caller.</summary>
    public const string AnonymousClaim = "aistream:anonymous";

    // A new principal per request: a shared one could be changed by a claims transformation for everyone.
    protected override Task<AuthenticateResult> HandleAuthenticateAsync() =>
        Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(
            new ClaimsPrincipal(new ClaimsIdentity([new Claim(AnonymousClaim, "true")], SchemeName)), SchemeName)));
}
