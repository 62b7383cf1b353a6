using System.Text;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.Tokens;

namespace AiStream.LoadTest.Floor;

/// <summary>
/// The floor of the <c>connections</c> scenario: the smallest ASP.NET Core app that holds the gateway's SSE watch
/// (<c>GET /api/sessions/{id}/events</c>) and SignalR hub connection (<c>/hubs/sessions</c>, <c>Join</c>) behind the
/// middleware the gateway must have in front of them: JwtBearer authentication, authorization, CORS and a per-user
/// concurrency rate limiter. Nothing else: no session log, no presence, no delivery. What an idle connection costs
/// here is what ASP.NET Core, Kestrel, SignalR and that middleware cost; the gateway's figure minus this one is ours.
/// </summary>
/// <remarks>
/// Configuration uses the gateway's keys where the gateway has (or will have) them, so the load tool starts both the
/// same way. Without <c>AiStream:Auth:Jwt:SigningKey</c> the floor is bare: the same two endpoints with none of the
/// middleware, the reference for what the middleware itself adds.
/// </remarks>
internal static partial class FloorApp
{
    /// <summary>The HS256 shared secret (at least 32 bytes of UTF-8), as the gateway's.</summary>
    public const string SigningKeySetting = "AiStream:Auth:Jwt:SigningKey";

    /// <summary>Concurrent connections per user (the token's <c>sub</c>). Default 100,000: the load tool's connections all belong to one user.</summary>
    public const string ConnectionsPerUserSetting = "AiStream:Limits:ConnectionsPerUser";

    /// <summary>Browser origins allowed by the CORS policy, comma-separated. Default <c>http://localhost</c>.</summary>
    public const string AllowedOriginsSetting = "AiStream:Security:AllowedOrigins";

    private const string CorsPolicy = "floor";
    private const string PerUserPolicy = "per-user";

    public static WebApplicationBuilder AddFloor(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        var services = builder.Services;
        services.AddSignalR();
        var key = configuration[SigningKeySetting];
        if (string.IsNullOrEmpty(key))
        {
            return builder;
        }

        if (Encoding.UTF8.GetByteCount(key) < 32)
        {
            throw new InvalidOperationException($"{SigningKeySetting} must be at least 32 bytes of UTF-8.");
        }

        services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(options =>
        {
            // Claims keep their JWT names (sub, name, scope, sessions) instead of the WS-* URIs.
            options.MapInboundClaims = false;
            options.TokenValidationParameters = new TokenValidationParameters
            {
                IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)),
                ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
                ValidateIssuer = false,
                ValidateAudience = false,
                ClockSkew = TimeSpan.FromSeconds(30),
                NameClaimType = "name",
            };
            options.Events = new JwtBearerEvents
            {
                // Browser EventSource and WebSocket clients cannot set headers (the SignalR docs' OnMessageReceived).
                OnMessageReceived = context =>
                {
                    var path = context.HttpContext.Request.Path;
                    if ((path.StartsWithSegments("/hubs/sessions", StringComparison.Ordinal) || path.StartsWithSegments("/api/sessions", StringComparison.Ordinal))
                        && context.Request.Query["access_token"].ToString() is { Length: > 0 } token)
                    {
                        context.Token = token;
                    }

                    return Task.CompletedTask;
                },
            };
        });
        services.AddAuthorization();
        var origins = (configuration[AllowedOriginsSetting] ?? "http://localhost").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        services.AddCors(options => options.AddPolicy(CorsPolicy, policy => policy.WithOrigins(origins).AllowAnyHeader().AllowAnyMethod().AllowCredentials()));
        var perUser = configuration.GetValue(ConnectionsPerUserSetting, 100_000);
        services.AddRateLimiter(options =>
        {
            options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            // A concurrency limiter holds its lease for the whole request, so on a watch or a WebSocket it counts
            // open connections per user, as the gateway's ConnectionsPerUser will.
            options.AddPolicy(PerUserPolicy, context => RateLimitPartition.GetConcurrencyLimiter(
                context.User.FindFirst("sub")?.Value ?? string.Empty,
                _ => new ConcurrencyLimiterOptions { PermitLimit = perUser, QueueLimit = 0 }));
        });
        return builder;
    }

    public static WebApplication MapFloor(this WebApplication app)
    {
        var secured = !string.IsNullOrEmpty(app.Configuration[SigningKeySetting]);
        app.MapGet("/healthz", () => "ok");
        app.MapGet("/readyz", () => "ok");
        if (!secured)
        {
            Log.Bare(app.Logger);
            app.MapGet("/api/sessions/{sessionId}/events", FloorSse.WatchAsync);
            app.MapHub<BareFloorHub>("/hubs/sessions");
            return app;
        }

        // CORS first, so a preflight is answered before authentication turns it away.
        app.UseCors(CorsPolicy);
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        app.MapGet("/api/sessions/{sessionId}/events", FloorSse.WatchAsync).RequireAuthorization().RequireRateLimiting(PerUserPolicy);
        app.MapHub<AuthorizedFloorHub>("/hubs/sessions").RequireAuthorization().RequireRateLimiting(PerUserPolicy);
        return app;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9001, Level = LogLevel.Warning, Message = "No signing key: the floor is bare (no authentication, authorization, CORS or rate limiter)")]
        public static partial void Bare(ILogger logger);
    }
}
