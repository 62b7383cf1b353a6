using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace AiStream.Gateway.Agents;

/// <summary>
/// The prompt templates and agents loaded from the prompts folder. At start every file must be valid (each problem
/// is one line and the gateway does not start). While running, edits are picked up: a changed, added or removed file
/// takes effect, and a broken edit keeps the file's last good version and logs why.
/// </summary>
internal sealed partial class PromptLibrary : IDisposable
{
    private readonly string _root;
    private readonly AgentToolbox _toolbox;
    private readonly AgentsOptions _options;
    private readonly ILogger<PromptLibrary> _logger;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private PhysicalFileProvider? _files;
    private IDisposable? _watch;
    private ITimer? _pending;
    private bool _disposed;
    // Replaced whole under _gate, read without it: requests see one consistent set, old or new.
    private volatile Loaded _loaded = Loaded.Empty;

    public PromptLibrary(IOptions<AgentsOptions> options, IHostEnvironment environment, AgentToolbox toolbox, TimeProvider time, ILogger<PromptLibrary> logger)
    {
        _options = options.Value;
        _toolbox = toolbox;
        _time = time;
        _logger = logger;
        // Relative to the content root, else (a content root elsewhere, as under a test host) beside the gateway's files.
        _root = Path.GetFullPath(Path.Combine(environment.ContentRootPath, _options.PromptsPath));
        var besideApp = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, _options.PromptsPath));
        if (!Directory.Exists(_root) && Directory.Exists(besideApp))
        {
            _root = besideApp;
        }
    }

    /// <summary>The folder read.</summary>
    public string Root => _root;

    /// <summary>Templates by name, sorted.</summary>
    public IReadOnlyList<PromptDefinition> Prompts => _loaded.PromptList;

    /// <summary>Agents by name, sorted.</summary>
    public IReadOnlyList<AgentDefinition> Agents => _loaded.AgentList;

    public bool TryGetPrompt(string name, [NotNullWhen(true)] out PromptDefinition? prompt) => _loaded.Prompts.TryGetValue(name, out prompt);

    public bool TryGetAgent(string name, [NotNullWhen(true)] out AgentDefinition? agent) => _loaded.Agents.TryGetValue(name, out agent);

    /// <summary>Reads the folder at start; the problems found, one line each (empty when all is well).</summary>
    public IReadOnlyList<string> Load()
    {
        lock (_gate)
        {
            var (loaded, errors) = Read(Loaded.Empty);
            _loaded = loaded;
            Log.Loaded(_logger, loaded.PromptList.Count, loaded.AgentList.Count, _root);
            if (_options.Reload && Directory.Exists(_root))
            {
                // Polling (every 4 s) for folders where file system events do not arrive (some container volume mounts).
                _files = new PhysicalFileProvider(_root) { UsePollingFileWatcher = _options.PollForChanges, UseActivePolling = _options.PollForChanges };
                var files = _files;
                _watch = ChangeToken.OnChange(() => new CompositeChangeToken([files.Watch("**/*.yaml"), files.Watch("**/*.yml")]), Changed);
            }

            return errors;
        }
    }

    /// <summary>Reads the folder again now (also what a change triggers, after the edits settle).</summary>
    public void Reload()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            var (loaded, errors) = Read(_loaded);
            foreach (var error in errors)
            {
                Log.KeptLastGood(_logger, error);
            }

            _loaded = loaded;
            Log.Reloaded(_logger, loaded.PromptList.Count, loaded.AgentList.Count, errors.Count);
        }
    }

    private void Changed()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _pending?.Dispose();
            _pending = _time.CreateTimer(_ => Reload(), null, TimeSpan.FromMilliseconds(_options.ReloadDelayMilliseconds), Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// Reads every file. A file that fails keeps what it last defined in <paramref name="previous"/> (nothing at start);
    /// a file that is gone takes its definitions with it.
    /// </summary>
    private (Loaded Loaded, List<string> Errors) Read(Loaded previous)
    {
        var errors = new List<string>();
        var prompts = new Dictionary<string, PromptDefinition>(StringComparer.Ordinal);
        var agents = new Dictionary<string, AgentDefinition>(StringComparer.Ordinal);
        if (!Directory.Exists(_root))
        {
            errors.Add($"{_root}: the prompts folder does not exist (AiStream:Agents:PromptsPath)");
            return (previous, errors);
        }

        foreach (var file in Files(_root))
        {
            var (prompt, error) = Text(file, out var text) is { } readError ? (null, readError) : PromptFiles.ReadPrompt(Relative(file), text!);
            prompt ??= previous.PromptList.FirstOrDefault(p => p.File == Relative(file));
            Add(prompts, prompt, error, p => p.Name, p => p.File, errors);
        }

        foreach (var file in Files(Path.Combine(_root, "agents")))
        {
            var (agent, error) = Text(file, out var text) is { } readError ? (null, readError)
                : PromptFiles.ReadAgent(Relative(file), text!, _toolbox.Contains, _toolbox.Names, _options.DefaultMaxSteps);
            agent ??= previous.AgentList.FirstOrDefault(a => a.File == Relative(file));
            Add(agents, agent, error, a => a.Name, a => a.File, errors);
        }

        return (new Loaded(prompts.ToFrozenDictionary(StringComparer.Ordinal), agents.ToFrozenDictionary(StringComparer.Ordinal),
            [.. prompts.Values.OrderBy(p => p.Name, StringComparer.Ordinal)], [.. agents.Values.OrderBy(a => a.Name, StringComparer.Ordinal)]), errors);
    }

    private static void Add<T>(Dictionary<string, T> into, T? definition, string? error, Func<T, string> name, Func<T, string> file, List<string> errors)
        where T : class
    {
        if (error is not null)
        {
            errors.Add(error);
        }

        if (definition is null)
        {
            return;
        }

        if (into.TryGetValue(name(definition), out var other))
        {
            errors.Add($"{file(definition)}: name '{name(definition)}' is already defined by {file(other)}");
            return;
        }

        into[name(definition)] = definition;
    }

    private static IEnumerable<string> Files(string folder) =>
        Directory.Exists(folder)
            ? Directory.EnumerateFiles(folder, "*.*", SearchOption.TopDirectoryOnly)
                .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal)
            : [];

    private string Relative(string file) => Path.GetRelativePath(Path.GetDirectoryName(_root) ?? _root, file).Replace('\\', '/');

    private string? Text(string file, out string? text)
    {
        text = null;
        try
        {
            if (new FileInfo(file).Length > PromptFiles.MaxFileBytes)
            {
                return $"{Relative(file)}: larger than {PromptFiles.MaxFileBytes} bytes";
            }

            text = File.ReadAllText(file);
            return null;
        }
        catch (IOException ex)
        {
            return $"{Relative(file)}: cannot be read: {ex.Message}";
        }
        catch (UnauthorizedAccessException ex)
        {
            return $"{Relative(file)}: cannot be read: {ex.Message}";
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            // A change timer due after this finds the library disposed and reads nothing (the folder may be gone).
            _disposed = true;
            _watch?.Dispose();
            _pending?.Dispose();
            _files?.Dispose();
        }
    }

    private sealed record Loaded(
        FrozenDictionary<string, PromptDefinition> Prompts,
        FrozenDictionary<string, AgentDefinition> Agents,
        IReadOnlyList<PromptDefinition> PromptList,
        IReadOnlyList<AgentDefinition> AgentList)
    {
        public static readonly Loaded Empty = new(FrozenDictionary<string, PromptDefinition>.Empty, FrozenDictionary<string, AgentDefinition>.Empty, [], []);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Loaded {Prompts} prompt templates and {Agents} agents from {Folder}")]
        public static partial void Loaded(ILogger logger, int prompts, int agents, string folder);

        [LoggerMessage(2, LogLevel.Information, "Prompts reloaded: {Prompts} templates, {Agents} agents ({Errors} files kept their last good version)")]
        public static partial void Reloaded(ILogger logger, int prompts, int agents, int errors);

        [LoggerMessage(3, LogLevel.Warning, "Prompt file not reloaded, its last good version stays: {Error}")]
        public static partial void KeptLastGood(ILogger logger, string error);
    }
}
