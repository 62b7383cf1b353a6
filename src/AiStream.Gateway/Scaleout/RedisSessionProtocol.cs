using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using AiStream.Gateway.Sessions;
using StackExchange.Redis;

namespace AiStream.Gateway.Scaleout;

/// <summary>
/// The wire format of sessions in Redis: a published batch is <c>firstSeq\nrunId\nappendedAt\nevent\nevent...</c>, a
/// stream entry has the id <c>seq-0</c> and the fields <c>e</c> (the event with its <c>seq</c>), <c>r</c> and <c>t</c>,
/// a checkpoint is <c>seq\n[{"e":event,"r":runId}...]</c>; and the arguments of the session scripts.
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

    /// <summary>A checkpoint's value: its position, a newline, and the events that rebuild the state.</summary>
    public static string FormatCheckpoint(long seq, IEnumerable<(JsonObject Body, string? RunId)> events)
    {
        var array = new JsonArray();
        foreach (var (body, runId) in events)
        {
            var item = new JsonObject { ["e"] = body };
            if (runId is not null)
            {
                item["r"] = runId;
            }

            array.Add(item);
        }

        return seq.ToString(CultureInfo.InvariantCulture) + "\n" + array.ToJsonString();
    }

    /// <summary>A checkpoint's position and events (see <see cref="FormatCheckpoint"/>).</summary>
    public static (long Seq, List<(JsonObject Body, string? RunId)> Events) ParseCheckpoint(string text)
    {
        var newline = text.IndexOf('\n', StringComparison.Ordinal);
        var seq = long.Parse(text.AsSpan(0, newline), CultureInfo.InvariantCulture);
        var events = new List<(JsonObject Body, string? RunId)>();
        foreach (var item in JsonNode.Parse(text.AsSpan(newline + 1).ToString())!.AsArray().OfType<JsonObject>())
        {
            events.Add(((JsonObject)item["e"]!.DeepClone(), (item["r"] as JsonValue)?.GetValue<string>()));
        }

        return (seq, events);
    }

    /// <summary>Events older than this (Unix milliseconds) are trimmed from a session's stream.</summary>
    public static long Cutoff(long now, SessionsOptions options) => now - (long)TimeSpan.FromMinutes(options.MaxEventAgeMinutes).TotalMilliseconds;

    /// <summary>
    /// ARGV of <see cref="RedisScripts.AppendEvents"/>: channel, runId, now, maxLen, cutoff, ttl, floor, expected,
    /// idempotencyTtl, owner, maxBytes, bodies.
    /// </summary>
    public static RedisValue[] AppendArguments(RedisChannel channel, SessionsOptions options, TimeSpan keyTtl, byte[][] bodies, string? runId, bool idempotent,
        string owner, long now, long floor, long expected)
    {
        var args = new RedisValue[11 + bodies.Length];
        args[0] = channel.ToString();
        args[1] = runId ?? string.Empty;
        args[2] = now;
        args[3] = options.MaxEvents;
        args[4] = Cutoff(now, options);
        args[5] = (long)keyTtl.TotalMilliseconds;
        args[6] = floor;
        args[7] = expected;
        args[8] = idempotent ? (long)TimeSpan.FromMinutes(options.IdempotencyKeyMinutes).TotalMilliseconds : 0;
        args[9] = owner;
        args[10] = options.MaxLogBytes;
        for (var i = 0; i < bodies.Length; i++)
        {
            args[11 + i] = bodies[i];
        }

        return args;
    }

    /// <summary>
    /// The reply of <see cref="RedisScripts.AppendEvents"/>: the positions written (or, <c>Replayed</c>, those an earlier
    /// append with the same idempotency key got), whether the head was not the expected one, and whether the run is fenced.
    /// </summary>
    public static (long First, long Last, bool Replayed, bool Conflict, bool Fenced) ReadAppendReply(RedisResult[] reply)
    {
        var status = (long)reply[0];
        if (status == -2)
        {
            return (0, 0, false, false, true);
        }

        if (status == -1)
        {
            var range = ((string)reply[1]!).Split(':');
            return (long.Parse(range[0], CultureInfo.InvariantCulture), long.Parse(range[1], CultureInfo.InvariantCulture), true, false, false);
        }

        return ((long)reply[0], (long)reply[1], false, (long)reply[2] == 1, false);
    }

    /// <summary>ARGV of <see cref="RedisScripts.EndOrphan"/>: channel, runId, now, maxLen, cutoff, ttl, owner, maxBytes, bodies.</summary>
    public static RedisValue[] EndOrphanArguments(RedisChannel channel, SessionsOptions options, TimeSpan keyTtl, string runId, string owner, long now,
        IEnumerable<byte[]> bodies)
    {
        var args = new List<RedisValue> { channel.ToString(), runId, now, options.MaxEvents, Cutoff(now, options), (long)keyTtl.TotalMilliseconds, owner, options.MaxLogBytes };
        args.AddRange(bodies.Select(b => (RedisValue)b));
        return [.. args];
    }
}
