using System.Text;

namespace AiStream.IntegrationTests.Infrastructure;

/// <summary>Reads a raw SSE response line by line, so tests see exactly what went over the wire.</summary>
internal sealed class SseReader(Stream stream) : IDisposable
{
    private readonly StreamReader _reader = new(stream, Encoding.UTF8);

    /// <summary>The next event as its raw lines (comment, data, ...), without the blank line; null at the end.</summary>
    public async Task<List<string>?> NextEventAsync(CancellationToken cancellationToken = default)
    {
        var lines = new List<string>();
        while (true)
        {
            var line = await _reader.ReadLineAsync(cancellationToken);
            if (line is null)
            {
                return lines.Count > 0 ? lines : null;
            }

            if (line.Length == 0)
            {
                if (lines.Count > 0)
                {
                    return lines;
                }

                continue;
            }

            lines.Add(line);
        }
    }

    /// <summary>Every remaining event.</summary>
    public async Task<List<List<string>>> ReadAllAsync(CancellationToken cancellationToken = default)
    {
        var events = new List<List<string>>();
        while (await NextEventAsync(cancellationToken) is { } e)
        {
            events.Add(e);
        }

        return events;
    }

    public void Dispose() => _reader.Dispose();
}
