using System.Text;

namespace AiStream.Testing;

/// <summary>
/// Reads a raw SSE response line by line, so callers see exactly what went over the wire: event by event
/// (<see cref="NextEventAsync"/>, the tests) or line by line (<see cref="NextLineAsync"/>, the load tool, which scans
/// thousands of streams and counts their bytes).
/// </summary>
public sealed class SseReader : IDisposable
{
    private readonly StreamReader _reader;

    /// <param name="stream">The response body.</param>
    /// <param name="bufferSize">The reader's buffer (-1: the default); the load tool reads in larger blocks.</param>
    public SseReader(Stream stream, int bufferSize = -1) => _reader = new StreamReader(stream, Encoding.UTF8, true, bufferSize);

    /// <summary>The next raw line (without its line end); null at the end of the stream.</summary>
    public ValueTask<string?> NextLineAsync(CancellationToken cancellationToken = default) => _reader.ReadLineAsync(cancellationToken);

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
