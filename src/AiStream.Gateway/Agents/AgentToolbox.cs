using AiStream.Gateway.Agents.Tools;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.AI;
using Microsoft.SemanticKernel;

namespace AiStream.Gateway.Agents;

/// <summary>
/// The tools agents may call: Semantic Kernel functions compiled into the gateway. The built-in plugins (time,
/// calculator, session state) plus every <see cref="KernelPlugin"/> the host registers in DI. A tool is named by its
/// function name, which must be unique across plugins.
/// </summary>
internal sealed class AgentToolbox
{
    /// <summary>The plugin names of the built-in tools.</summary>
    public static readonly string[] BuiltInPlugins = ["time", "calculator", "state"];

    private readonly Kernel _kernel;
    private readonly Dictionary<string, KernelFunction> _functions = new(StringComparer.Ordinal);

    public AgentToolbox(IServiceProvider services, IEnumerable<KernelPlugin> hostPlugins, TimeProvider time)
    {
        var plugins = new KernelPluginCollection();
        plugins.Add(KernelPluginFactory.CreateFromObject(new TimeTools(time), "time"));
        plugins.Add(KernelPluginFactory.CreateFromObject(new CalculatorTools(), "calculator"));
        plugins.Add(KernelPluginFactory.CreateFromObject(new SessionStateTools(), "state"));
        foreach (var plugin in hostPlugins)
        {
            plugins.Add(plugin);
        }

        foreach (var plugin in plugins)
        {
            foreach (var function in plugin)
            {
                if (!_functions.TryAdd(function.Name, function))
                {
                    throw new InvalidOperationException(
                        $"Two plugins define a tool named '{function.Name}' (the second is in plugin '{plugin.Name}'); agents name tools by function name, so it must be unique.");
                }
            }
        }

        _kernel = new Kernel(services, plugins);
    }

    /// <summary>Every tool's name, sorted.</summary>
    public IReadOnlyList<string> Names => [.. _functions.Keys.Order(StringComparer.Ordinal)];

    public bool Contains(string name) => _functions.ContainsKey(name);

    /// <summary>The description of tool <paramref name="name"/>, for listings.</summary>
    public string? Describe(string name) => _functions.TryGetValue(name, out var function) ? function.Description : null;

    /// <summary>
    /// The named tools as functions the model may call, bound to one run: a kernel of its own carries the run's
    /// context, and each call goes through Semantic Kernel's function invocation (its filters included).
    /// </summary>
    public IReadOnlyList<AIFunction> For(IEnumerable<string> names, RunToolContext context)
    {
        var kernel = _kernel.Clone();
        kernel.Data[SessionStateTools.ContextKey] = context;
        var tools = new List<AIFunction>();
        foreach (var name in names)
        {
            if (_functions.TryGetValue(name, out var function))
            {
                tools.Add(new KernelTool(function, kernel));
            }
        }

        return tools;
    }

    /// <summary>
    /// A kernel function as the model sees it: named by its function name alone, described by its own schema, and
    /// invoked through <see cref="KernelFunction.InvokeAsync(Kernel, KernelArguments?, CancellationToken)"/> on the run's kernel.
    /// </summary>
    private sealed class KernelTool(KernelFunction function, Kernel kernel) : AIFunction
    {
        public override string Name => function.Name;

        public override string Description => function.Description;

        public override System.Text.Json.JsonElement JsonSchema => function.JsonSchema;

        protected override async ValueTask<object?> InvokeCoreAsync(AIFunctionArguments arguments, CancellationToken cancellationToken)
        {
            var result = await function.InvokeAsync(kernel, new KernelArguments(arguments), cancellationToken).ConfigureAwait(false);
            return result.GetValue<object>();
        }
    }
}
