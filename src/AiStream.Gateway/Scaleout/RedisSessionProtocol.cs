using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using AiStream.Gateway.Presence;
using AiStream.Gateway.Sessions;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// The wire format of sessions in Redis: a published batch is <c>firstSeq\nrunId\nappendedAt\nevent\nevent...</c>, a
/// stream entry has the id <c>seq-0</c> and the fields <c>e</c> (the event with its <c>seq</c>), <c>r</c> and <c>t</c>.
/// </summary>
internal static class RedisSessionProtocol
{
    /// <summary>The appended events as the log stores them, built from the bodies this writer already holds (no re-parse).</summary>
    public static List<(SessionEvent Event, JsonObject Body)> Stored(IReadOnlyList<JsonObject> objects, byte[][] bodies, string? runId, long now, long first)
    {
        var stored = new List<(SessionEvent Event, JsonObject Body)>(bodies.Length);
        for (var i = 0; i < bodies.Length; i++)
        {
            stored.Add(SessionEvent.FromStored(WithSeq(bodies[i], first + i), objects[i], first + i, runId, now));
        }

        return stored;
    }

    public static long[] Range(long first, long last) => first <= 0 ? [] : Enumerable.Range(0, (int)(last - first + 1)).Select(i => first + i).ToArray();

    /// <summary>The bytes the script stores: the body with <c>,"seq":N</c> before its closing brace.</summary>
    public static byte[] WithSeq(byte[] body, long seq)
    {
        var suffix = Encoding.ASCII.GetBytes(",\"seq\":" + seq.ToString(CultureInfo.InvariantCulture) + "}");
        var json = new byte[body.Length - 1 + suffix.Length];
        body.AsSpan(0, body.Length - 1).CopyTo(json);
        suffix.CopyTo(json.AsSpan(body.Length - 1));
        return json;
    }

    /// <summary>A published batch's header (<c>firstSeq\nrunId\nappendedAt\n</c>), how many events follow and where.</summary>
    public static (long First, string? RunId, long AppendedAt, int Count, int BodiesAt) ReadHeader(byte[] payload)
    {
        var span = payload.AsSpan();
        var firstEnd = span.IndexOf((byte)'\n');
        var runEnd = firstEnd + 1 + span[(firstEnd + 1)..].IndexOf((byte)'\n');
        var atEnd = runEnd + 1 + span[(runEnd + 1)..].IndexOf((byte)'\n');
        var bodiesAt = atEnd + 1;
        var runId = runEnd == firstEnd + 1 ? null : Encoding.UTF8.GetString(span[(firstEnd + 1)..runEnd]);
        return (long.Parse(span[..firstEnd], CultureInfo.InvariantCulture), runId, long.Parse(span[(runEnd + 1)..atEnd], CultureInfo.InvariantCulture),
            span[bodiesAt..].Count((byte)'\n') + 1, bodiesAt);
    }

    /// <summary>The events of a published batch, one per line after the header.</summary>
    public static List<byte[]> ReadBodies(byte[] payload, int bodiesAt)
    {
        var bodies = new List<byte[]>();
        foreach (var range in payload.AsSpan(bodiesAt).Split((byte)'\n'))
        {
            bodies.Add(payload.AsSpan(bodiesAt)[range].ToArray());
        }

        return bodies;
    }

    public static (SessionEvent, JsonObject) Parse(StreamEntry entry)
    {
        var runId = (string?)entry["r"];
        return SessionEvent.FromStored((byte[])entry["e"]!, SeqOf(entry.Id), string.IsNullOrEmpty(runId) ? null : runId, (long)entry["t"]);
    }

    public static long SeqOf(RedisValue id)
    {
        var text = (string)id!;
        return long.Parse(text.AsSpan(0, text.IndexOf('-', StringComparison.Ordinal)), CultureInfo.InvariantCulture);
    }
}
