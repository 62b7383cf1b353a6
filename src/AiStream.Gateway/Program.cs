using AiStream.Gateway.Hosting;

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = StartupFailure.ContentRoot(args) });
builder.Logging.QuietStartFailures();
builder.AddAiStream();

var app = builder.Build();
app.MapAiStream();
return StartupFailure.Run(app);

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
