using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace AiStream.Gateway.Security;

/// <summary>Authentication (JWT bearer, API keys, or anonymous when nothing is configured), authorization and origins.</summary>
internal static partial class SecurityHosting
{
    /// <summary>The policy of <c>/v1</c>: the <c>completions</c> scope.</summary>
    public const string CompletionsPolicy = "completions";

    /// <summary>The host's per-request log (URL with query string).</summary>
    private const string RequestLogCategory = "Microsoft.AspNetCore.Hosting.Diagnostics";

    /// <summary>The policy scheme that picks API key or JWT per request.</summary>
    private const string SelectingScheme = "AiStream";

    public static IServiceCollection AddAiStreamSecurity(this IServiceCollection services)
    {
        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.SectionName).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<AuthOptions>, AuthOptionsValidator>();
        services.AddOptions<SecurityOptions>().BindConfiguration(SecurityOptions.SectionName).ValidateOnStart();
        services.AddSingleton<IValidateOptions<SecurityOptions>, SecurityOptionsValidator>();
        services.AddSingleton<ApiKeyTable>();

        // The scheme is picked per request from the validated options: anonymous when nothing is configured, else an
        // API key when one is presented, else a JWT.
        services.AddAuthentication(SelectingScheme)
            .AddScheme<AuthenticationSchemeOptions, AnonymousAuthentication>(AnonymousAuthentication.SchemeName, null)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthentication>(ApiKeyAuthentication.SchemeName, null)
            .AddPolicyScheme(SelectingScheme, null, o => o.ForwardDefaultSelector = context =>
                !context.RequestServices.GetRequiredService<IOptions<AuthOptions>>().Value.Enabled ? AnonymousAuthentication.SchemeName
                : ApiKeyAuthentication.PresentedKey(context.Request) is not null ? ApiKeyAuthentication.SchemeName
                : JwtBearerDefaults.AuthenticationScheme)
            .AddJwtBearer();
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme).Configure<IOptions<AuthOptions>>((jwt, auth) => ConfigureJwt(jwt, auth.Value.Jwt));

        services.AddAuthorizationBuilder()
            .SetFallbackPolicy(new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build())
            .AddPolicy(CompletionsPolicy, policy => policy.RequireAuthenticatedUser().RequireAssertion(context =>
                context.Resource is HttpContext http ? CallerGrants.Of(http).Completions : CallerGrants.From(context.User).Completions));
        services.AddCors();
        // The host's request log prints the whole URL, and browser clients put their token in ?access_token=: that
        // category stays at Warning whatever the configuration says (requests are counted by the http.server metrics).
        services.Configure<LoggerFilterOptions>(o => o.AddFilter(RequestLogCategory, LogLevel.Warning));
        services.AddHealthChecks().AddCheck<AuthenticationModeCheck>("authentication", tags: ["ready"]);
        services.AddHostedService<AuthenticationModeLog>();
        return services;
    }

    /// <summary>Origin check and CORS (before anything else answers), then authentication and authorization.</summary>
    public static IApplicationBuilder UseAiStreamOrigins(this IApplicationBuilder app)
    {
        var allowed = app.ApplicationServices.GetRequiredService<IOptions<SecurityOptions>>().Value.AllowedOrigins;
        if (allowed.Length == 0)
        {
            return app;
        }

        var set = new HashSet<string>(allowed.Select(o => o.TrimEnd('/')), StringComparer.OrdinalIgnoreCase);
        app.Use((context, next) =>
        {
            var origin = context.Request.Headers.Origin;
            if (origin.Count == 0 || (origin.Count == 1 && origin[0] is { } value && set.Contains(value)))
            {
                return next(context);
            }

            return AuthProblem.WriteAsync(context, StatusCodes.Status403Forbidden,
                "This origin is not allowed (AiStream:Security:AllowedOrigins).", "permission_error", "origin_not_allowed");
        });
        app.UseCors(cors => cors.WithOrigins([.. set]).AllowAnyHeader().AllowAnyMethod().AllowCredentials()
            .WithExposedHeaders("X-AiStream-Client-Id", "Retry-After", "WWW-Authenticate"));
        return app;
    }

    private static void ConfigureJwt(JwtBearerOptions options, JwtOptions jwt)
    {
        // Claims keep their JWT names (sub, name, scope, sessions) instead of being mapped to WS-* URIs.
        options.MapInboundClaims = false;
        options.Authority = string.IsNullOrEmpty(jwt.Authority) ? null : jwt.Authority;
        options.RequireHttpsMetadata = jwt.RequireHttpsMetadata;
        var parameters = options.TokenValidationParameters;
        parameters.ValidateLifetime = true;
        parameters.RequireExpirationTime = true;
        parameters.ClockSkew = TimeSpan.FromSeconds(jwt.ClockSkewSeconds);
        parameters.ValidateIssuer = !string.IsNullOrEmpty(jwt.Issuer);
        parameters.ValidIssuer = jwt.Issuer;
        parameters.ValidateAudience = !string.IsNullOrEmpty(jwt.Audience);
        parameters.ValidAudience = jwt.Audience;
        parameters.NameClaimType = "name";
        if (!string.IsNullOrEmpty(jwt.SigningKey))
        {
            parameters.IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(jwt.SigningKey));
            // Only the algorithm the key is for: no "none", no other HMAC widths, no asymmetric confusion.
            parameters.ValidAlgorithms = [SecurityAlgorithms.HmacSha256];
        }

        options.Events = new JwtBearerEvents
        {
            OnMessageReceived = context =>
            {
                // Browser EventSource and WebSocket clients cannot set headers: they may pass ?access_token= on a GET
                // (watches, WebSocket upgrades) and on the hub's negotiate. Never on other POSTs.
                var request = context.Request;
                if (request.Headers.Authorization.Count == 0
                    && (HttpMethods.IsGet(request.Method) || request.Path.StartsWithSegments("/hubs", StringComparison.Ordinal))
                    && request.Query.TryGetValue("access_token", out var token) && token.Count == 1)
                {
                    context.Token = token[0];
                }

                return Task.CompletedTask;
            },
            OnTokenValidated = context =>
            {
                // The subject becomes the presence member id and a response header: 1 to 128 visible ASCII characters.
                var subject = context.Principal?.FindFirst("sub")?.Value;
                if (subject is not { Length: > 0 and <= 128 } || !subject.All(c => c is > ' ' and <= '~'))
                {
                    context.Fail("the token's 'sub' claim is missing or not 1 to 128 visible ASCII characters");
                }

                return Task.CompletedTask;
            },
            OnChallenge = async context =>
            {
                context.HandleResponse();
                var (message, code) = context.AuthenticateFailure switch
                {
                    null => ("A bearer token or API key is required.", "missing_credentials"),
                    SecurityTokenExpiredException => ("The token has expired.", "token_expired"),
                    SecurityTokenInvalidAudienceException => ("The token is not for this audience.", "invalid_audience"),
                    SecurityTokenInvalidIssuerException => ("The token is not from a trusted issuer.", "invalid_issuer"),
                    _ => ("The token is not valid.", "invalid_token"),
                };
                await AuthProblem.ChallengeAsync(context.HttpContext, message, code, context.AuthenticateFailure is null ? null : "invalid_token");
            },
            OnForbidden = context => AuthProblem.ForbidAsync(context.HttpContext),
        };
    }

    /// <summary><c>/readyz</c> says whether authentication is on, so an exposed gateway without it is seen.</summary>
    private sealed class AuthenticationModeCheck(IOptions<AuthOptions> auth) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(HealthCheckResult.Healthy(auth.Value.Enabled
                ? "authentication on"
                : "authentication OFF: no credential is configured, every caller is anonymous with every right"));
    }

    /// <summary>Warns at start when authentication is off.</summary>
    private sealed partial class AuthenticationModeLog(IOptions<AuthOptions> auth, ILogger<AuthenticationModeLog> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            if (auth.Value.Enabled)
            {
                AuthenticationOn(logger, auth.Value.Jwt.Configured, auth.Value.ApiKeys.Count);
            }
            else
            {
                AuthenticationOff(logger);
            }

            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        [LoggerMessage(EventId = 9001, Level = LogLevel.Warning, Message = "Authentication is OFF: no AiStream:Auth credential is configured, so every caller is anonymous with every right. Configure AiStream:Auth:Jwt:SigningKey, :Authority or an API key before exposing the gateway.")]
        private static partial void AuthenticationOff(ILogger logger);

        [LoggerMessage(EventId = 9002, Level = LogLevel.Information, Message = "Authentication on: JWT {Jwt}, {ApiKeys} API keys")]
        private static partial void AuthenticationOn(ILogger logger, bool jwt, int apiKeys);
    }
}

/// <summary>Checks <see cref="SecurityOptions"/> at start.</summary>
internal sealed class SecurityOptionsValidator : IValidateOptions<SecurityOptions>
{
    public ValidateOptionsResult Validate(string? name, SecurityOptions options)
    {
        var errors = options.AllowedOrigins
            .Where(o => !Uri.TryCreate(o, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.PathAndQuery != "/" || o.TrimEnd('/').Contains('/', StringComparison.Ordinal) && o.TrimEnd('/').LastIndexOf('/') > o.IndexOf("//", StringComparison.Ordinal) + 1)
            .Select(o => $"AiStream:Security:AllowedOrigins: '{o}' is not an origin (scheme://host[:port], no path).")
            .ToList();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
