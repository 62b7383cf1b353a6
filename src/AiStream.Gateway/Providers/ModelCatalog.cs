using Microsoft.Extensions.Options;

namespace AiStream.Gateway.Providers;

/// <summary>A public model name resolved to the provider that serves it, with its timeouts.</summary>
internal sealed record ModelRoute(
    string Name,
    string ProviderName,
    ProviderOptions Provider,
    string UpstreamModel,
    IReadOnlyList<string> Fallbacks,
    TimeSpan TimeToFirstTokenTimeout,
    TimeSpan IdleTimeout,
    TimeSpan RequestTimeout)
{
    public bool IsSimulated => Provider.Type == ProviderTypes.Simulated;
}

/// <summary>Resolves public model names. Built once from validated options.</summary>
internal sealed class ModelCatalog
{
    private readonly Dictionary<string, ModelRoute> _routes = new(StringComparer.OrdinalIgnoreCase);

    public ModelCatalog(IOptions<AiStreamOptions> options)
    {
        var value = options.Value;
        DefaultModel = value.DefaultModel;
        foreach (var (name, model) in value.Models)
        {
            var providerName = model.Provider!;
            var provider = value.Providers[providerName];
            _routes[name] = new ModelRoute(
                name,
                providerName,
                provider,
                string.IsNullOrWhiteSpace(model.UpstreamModel) ? name : model.UpstreamModel,
                model.Fallbacks.ToArray(),
                TimeSpan.FromSeconds(model.TimeToFirstTokenTimeoutSeconds),
                TimeSpan.FromSeconds(model.IdleTimeoutSeconds),
                TimeSpan.FromSeconds(model.RequestTimeoutSeconds));
        }
    }

    /// <summary>The model used when a request names none.</summary>
    public string DefaultModel { get; }

    /// <summary>Every public model, in name order.</summary>
    public IEnumerable<ModelRoute> All => _routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal);

    public bool TryResolve(string name, out ModelRoute route) => _routes.TryGetValue(name, out route!);

    /// <summary>The model itself followed by its fallbacks, in order, each at most once.</summary>
    public IReadOnlyList<ModelRoute> Candidates(ModelRoute first)
    {
        var list = new List<ModelRoute>(1 + first.Fallbacks.Count) { first };
        foreach (var name in first.Fallbacks)
        {
            if (_routes.TryGetValue(name, out var route) && !list.Contains(route))
            {
                list.Add(route);
            }
        }

        return list;
    }
}
