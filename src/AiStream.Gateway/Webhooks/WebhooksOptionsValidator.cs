using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Webhooks;

/// <summary>Checks every subscription at start; each problem names its full key.</summary>
internal sealed class WebhooksOptionsValidator : IValidateOptions<WebhooksOptions>
{
    public ValidateOptionsResult Validate(string? name, WebhooksOptions options)
    {
        var failures = new List<string>();
        foreach (var (subscription, o) in options.Subscriptions)
        {
            var key = $"{WebhooksOptions.SectionName}:{subscription}";
            if (!Uri.TryCreate(o.Url, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            {
                failures.Add($"{key}:Url: must be an absolute http or https URL.");
            }

            if (WebhookSigner.ParseSecret(o.Secret) is null)
            {
                failures.Add($"{key}:Secret: must be 'whsec_' followed by base64 of at least {WebhookSigner.MinSecretBytes} bytes.");
            }

            if (o.Events.Length == 0 || o.Events.Any(e => string.IsNullOrWhiteSpace(e) || e.Length > 200))
            {
                failures.Add($"{key}:Events: name at least one event (run.finished, presence.join, a CUSTOM event name, or *).");
            }

            if (o.Sessions is not null && !Security.SessionPattern.IsValid(o.Sessions))
            {
                failures.Add($"{key}:Sessions: must be a session id, 'prefix*' or '*'.");
            }
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
