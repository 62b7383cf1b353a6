using AiStream.Gateway.Hosting;
using AiStream.Gateway.Transports;

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = StartupFailure.ContentRoot(args) });
builder.Logging.QuietStartFailures();
// A process-wide switch the runtime reads once, before the first socket: set here, not while registering services.
EventLoopIo.ConfigureRuntime(builder.Configuration);
builder.AddAiStream();

var app = builder.Build();
app.MapAiStream();
return StartupFailure.Run(app);

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
