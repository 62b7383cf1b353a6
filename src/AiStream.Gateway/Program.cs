using AiStream.Gateway.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddAiStream();

var app = builder.Build();
app.MapAiStream();
app.Run();

/// <summary>Entry point; public so tests can host it with WebApplicationFactory.</summary>
public partial class Program;
