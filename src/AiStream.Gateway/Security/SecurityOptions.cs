namespace AiStream.Gateway.Security;

/// <summary>The <c>AiStream:Security</c> section: browser origins.</summary>
public sealed class SecurityOptions
{
    /// <summary>Configuration section name.</summary>
    public const string SectionName = "AiStream:Security";

    /// <summary>
    /// Browser origins allowed (<c>https://app.example.com</c>). When set, a request whose <c>Origin</c> is not listed
    /// gets 403 before any data flows (SSE, negotiate, WebSocket upgrades, <c>/agui</c>, every POST), and CORS
    /// preflights of listed origins are answered. Empty (default): no origin check and no CORS headers.
    /// </summary>
    public string[] AllowedOrigins { get; set; } = [];
}
