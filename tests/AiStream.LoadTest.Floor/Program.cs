using AiStream.LoadTest.Floor;

// The floor: see FloorApp. Started by the load tool's `connections` scenario as `dotnet AiStream.LoadTest.Floor.dll --urls http://127.0.0.1:<port>`.
var builder = WebApplication.CreateBuilder(args);
builder.AddFloor();

var app = builder.Build();
app.MapFloor();
app.Run();
