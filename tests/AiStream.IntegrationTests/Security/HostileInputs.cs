using System.Globalization;
using System.Text;

namespace AiStream.IntegrationTests.Security;

/// <summary>One HTTP request a hostile client could send.</summary>
internal sealed record HttpProbe(string Method, string Path, string? Body, string? ContentType, IReadOnlyList<(string Name, string Value)> Headers)
{
    public override string ToString() =>
        $"{Method} {Path} [{string.Join("; ", Headers.Select(h => $"{h.Name}: {Trim(h.Value)}"))}] {Trim(Body ?? "")}";

    internal static string Trim(string text) => text.Length <= 300 ? text : text[..300] + $"…({text.Length} chars)";
}

/// <summary>One hub invocation a hostile client could send: a method name and raw JSON arguments.</summary>
internal sealed record HubProbe(string Method, string[] ArgumentsJson)
{
    public override string ToString() => $"{Method}({string.Join(", ", ArgumentsJson.Select(HttpProbe.Trim))})";
}

/// <summary>
/// Generators of hostile inputs, written by hand because the interesting cases are specific (the reproductions of
/// the security issue, JSON Patch sequences that grow state, ids that break headers, lone surrogates), seeded by
/// CsCheck so a failure names the seed that reproduces it.
/// </summary>
internal sealed class HostileInputs(Random random)
{
    private static readonly string[] Ids =
    [
        "fuzz-a", "fuzz-b", "fuzz:c", "", "abc\n", "abc%0A", "abc%0D%0Aset-cookie:%20x=1", "..", "%2e%2e", "a%2Fb", "a/b", "*",
        new string('x', 128), new string('x', 129), new string('x', 5000), "ñ", "%00", "%F0%9F%92%A5", "a%20b", "%ED%A0%80", "%FF",
        "fuzz-a%0A", "CON", "fuzz-%C0%AE",
    ];

    private static readonly string[] Unicode =
    [
        "\\ud800", "\\udfff", "\\ud800\\u0041", "\\u0000", "\\ufeff", "\\u202e", "💥", "e\u0301", "\\uDBFF\\uDFFF", "\\\\u0000",
        "\u0085", "\u2028", "a\\nb", "\\\"", "%0A", "\r\n", new string('x', 4000), string.Concat(Enumerable.Repeat("\u0301", 500)),
    ];

    private static readonly string[] EventTypes =
    [
        "CUSTOM", "STATE_SNAPSHOT", "STATE_DELTA", "MESSAGES_SNAPSHOT", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END", "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT", "RUN_STARTED",
        "RUN_FINISHED", "RUN_ERROR", "STEP_STARTED", "RAW", "", "custom", "__proto__",
    ];

    private static readonly string[] PatchOps = ["add", "remove", "replace", "move", "copy", "test", "bogus", ""];

    /// <summary>A whole HTTP probe against one of the gateway's endpoints (or none of them).</summary>
    public HttpProbe NextHttp()
    {
        var id = Pick(Ids);
        var headers = new List<(string, string)>();
        switch (random.Next(12))
        {
            case 0:
                headers.Add(("Authorization", Pick(["Bearer ", "Bearer a.b.c", "Bearer " + new string('A', 9000), "Basic Zm9vOmJhcg==", "Bearer x.y", "bearer \u00e9"])));
                break;
            case 1:
                headers.Add(("X-Api-Key", Pick(["", "k", new string('k', 600), "key\u00e9"])));
                break;
            case 2:
                headers.Add(("Origin", Pick(["null", "https://evil.example", "", "http://[::1", "https://app.example.com"])));
                break;
            case 3:
                headers.Add(("Last-Event-ID", Pick(["-1", "99999999999999999999", "1e3", "abc", " 5", "5\u0000", "9223372036854775807"])));
                break;
            case 4:
                headers.Add(("Cookie", "aistream_cid=" + Pick(["ab%0A", "ab\u00e9", new string('c', 300), "", "a;b"])));
                break;
            case 5:
                headers.Add(("Idempotency-Key", Pick(["k", new string('i', 300), "\u00e9"])));
                break;
        }

        return random.Next(12) switch
        {
            0 or 1 => new HttpProbe("POST", $"/api/sessions/{id}/events", NextPublishBody(), "application/json", headers),
            2 => new HttpProbe("POST", $"/api/sessions/{id}/runs", NextRunBody(), Pick(["application/json", "text/plain", null]), headers),
            3 => new HttpProbe("POST", $"/api/sessions/{id}/runs/{Pick(Ids)}/cancel", null, null, headers),
            4 => new HttpProbe("GET", $"/api/sessions/{id}/events?{Query()}", null, null, headers),
            5 => new HttpProbe(Pick(["GET", "POST"]), $"/api/sessions/{id}" + Pick(["", "/presence?limit=" + Pick(["0", "-1", "1", "99999999999", "x"]), "/presence/state?" + Query()]), random.Next(2) == 0 ? NextJson(4) : null, "application/json", headers),
            6 => new HttpProbe("POST", "/agui", NextAguiBody(id), "application/json", headers),
            7 or 8 => new HttpProbe("POST", "/v1/chat/completions", NextCompletionBody(), Pick(["application/json", "text/plain"]), headers),
            9 => new HttpProbe("GET", "/v1/models/" + id, null, null, headers),
            10 => random.Next(3) switch
            {
                0 => new HttpProbe("POST", "/api/chat", NextChatBody(id), Pick(["application/json", "text/plain"]), headers),
                1 => new HttpProbe("GET", $"/api/chat/{id}/stream", null, null, headers),
                _ => new HttpProbe("POST", $"/api/chat/{id}/stop", random.Next(2) == 0 ? NextJson(3) : null, "application/json", headers),
            },
            _ => new HttpProbe(Pick(["GET", "PUT", "DELETE", "OPTIONS", "PATCH", "POST"]), Pick(["/", "/api/sessions", "/api/sessions/x/../../v1/models", "/%ff", "/hubs/sessions", "/hubs/sessions/negotiate?negotiateVersion=" + Pick(["1", "-1", "x"]), "/v1", "/agui/x", "/readyz?x=%00"]), random.Next(2) == 0 ? NextJson(3) : null, "application/json", headers),
        };
    }

    /// <summary>A hub invocation with arguments of any shape.</summary>
    public HubProbe NextHub()
    {
        var id = Json(Pick(Ids.Where(i => !i.Contains('%', StringComparison.Ordinal)).ToArray()));
        return random.Next(8) switch
        {
            0 => new HubProbe("Join", [id, Pick(["null", "-5", "0", "99999999999", "\"x\"", "1.5"])]),
            1 => new HubProbe("SetState", [id, NextJson(5)]),
            2 => new HubProbe("StartRun", [id, NextRunBody()]),
            3 => new HubProbe("CancelRun", [id, Json(Pick(Ids))]),
            4 => new HubProbe("Publish", [id, NextEvent()]),
            5 => new HubProbe("Leave", [id]),
            6 => new HubProbe(Pick(["Nope", "OnConnectedAsync", "Dispose", ""]), [id]),
            _ => new HubProbe(Pick(["Join", "Publish", "SetState"]), [NextJson(3), NextJson(3)]),
        };
    }

    private string Query() => string.Join("&", Enumerable.Range(0, random.Next(4)).Select(_ =>
        Pick(["after", "clientId", "name", "color", "access_token", "limit"]) + "=" + Pick(["", "1", "-1", "abc%0A", "%00", "%ED%A0%80", new string('n', 200), "x%0D%0Ay:z", "99999999999999999999"])));

    /// <summary>One event or a batch, often a state snapshot followed by patches that try to grow it.</summary>
    private string NextPublishBody() => random.Next(6) switch
    {
        0 => NextPatchSequence(),
        1 => "[" + string.Join(",", Enumerable.Range(0, random.Next(0, 40)).Select(_ => NextEvent())) + "]",
        2 => NextJson(6),
        _ => NextEvent(),
    };

    /// <summary>
    /// A STATE_SNAPSHOT (sometimes deep) and STATE_DELTA batches whose ops copy and move the state into itself: the
    /// reproductions of the issue (depth doubling per copy, size doubling per copy from the root) and their relatives.
    /// </summary>
    private string NextPatchSequence()
    {
        var depth = Pick([1, 5, 32, 60, 63, 64, 65, 200]);
        var deepPath = string.Concat(Enumerable.Repeat("/a", depth));
        var snapshot = string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth);
        var events = new List<string> { $$"""{"type":"STATE_SNAPSHOT","snapshot":{{(random.Next(3) == 0 ? NextJson(4) : snapshot)}}}""" };
        for (var i = random.Next(1, 30); i > 0; i--)
        {
            var ops = Enumerable.Range(0, random.Next(1, 12)).Select(_ =>
            {
                var op = Pick(PatchOps);
                var path = Pick(["", "/", "/a", "/a/-", "/a/0", "/~0/~1", "/b", deepPath, deepPath + "/b", "/a/b/c", "/-", "/0", "/a~2", "/" + new string('z', 3000)]);
                var from = Pick(["", "/a", deepPath, "/missing", "/a/0"]);
                return random.Next(3) switch
                {
                    0 => $$"""{"op":"{{op}}","path":{{Json(path)}},"from":{{Json(from)}}}""",
                    1 => $$"""{"op":"{{op}}","path":{{Json(path)}},"value":{{NextJson(5)}}}""",
                    _ => $$"""{"op":"copy","from":"","path":{{Json(deepPath + "/b")}}}""",
                };
            });
            events.Add($$"""{"type":"STATE_DELTA","delta":[{{string.Join(",", ops)}}]}""");
        }

        return "[" + string.Join(",", events) + "]";
    }

    private string NextEvent()
    {
        var type = Pick(EventTypes);
        var fields = new List<string> { $"\"type\":{Json(type)}" };
        foreach (var name in new[] { "name", "value", "messageId", "delta", "role", "toolCallId", "toolCallName", "snapshot", "messages", "runId", "threadId", "content", "seq", "timestamp" })
        {
            if (random.Next(3) == 0)
            {
                fields.Add($"{Json(name)}:{NextJson(4)}");
            }
        }

        return "{" + string.Join(",", fields) + "}";
    }

    private string NextRunBody() => random.Next(4) switch
    {
        0 => NextJson(5),
        _ => $$"""{"messages":{{NextMessages()}},"model":{{Pick(["\"sim\"", "\"nope\"", "1", "null", Json(NextString())])}},"tools":{{Pick(["[]", "null", "{}", "[{\"type\":\"function\",\"function\":{\"name\":" + Json(NextString()) + ",\"parameters\":" + NextJson(4) + "}}]", NextJson(3)])}}{{(random.Next(4) == 0 ? ",\"prompt\":" + Json(NextString()) : "")}}}""",
    };

    private string NextAguiBody(string threadId) => random.Next(4) switch
    {
        0 => NextJson(5),
        _ => $$"""{"threadId":{{Json(threadId)}},"runId":{{Json(Pick(Ids))}},"messages":{{NextMessages()}},"tools":{{Pick(["[]", "null", NextJson(3)])}},"context":{{Pick(["[]", NextJson(3)])}},"state":{{NextJson(4)}},"forwardedProps":{{Pick(["{}", "{\"model\":\"sim\"}", NextJson(3)])}}}""",
    };

    /// <summary>An AI SDK chat request: UI messages with parts of any shape, tool parts naming any call.</summary>
    private string NextChatBody(string id)
    {
        var part = () => Pick([
            """{"type":"text","text":"What is 2 * 3? Use calculate."}""", """{"type":"text","text":null}""", "\"text\"", NextJson(3),
            """{"type":"tool-calculate","toolCallId":"call_1","state":"output-available","output":{"x":[1,2]}}""",
            """{"type":"dynamic-tool","toolCallId":"","state":"output-error","errorText":null}""", """{"type":"file","url":"data:,x"}""",
        ]);
        var message = () => $$"""{"id":{{Pick(["\"m1\"", "\"\"", "7", "null", "{}", Json(new string('i', 300))])}},"role":{{Pick(["\"user\"", "\"assistant\"", "\"system\"", "\"tool\"", "1"])}},"parts":{{Pick(["[]", "null", "[" + string.Join(",", Enumerable.Range(0, random.Next(4)).Select(_ => part())) + "]"])}}}""";
        return random.Next(5) switch
        {
            0 => NextJson(5),
            _ => $$"""{"id":{{Pick([Json(id), "5", "null", "\"a/b\""])}},"trigger":{{Pick(["\"submit-message\"", "\"regenerate-message\"", "\"resume\"", "null", "[]"])}},"messages":{{Pick(["[]", NextJson(3), "[" + string.Join(",", Enumerable.Range(0, random.Next(5)).Select(_ => message())) + "]"])}}{{(random.Next(3) == 0 ? ",\"tools\":" + NextJson(3) : "")}}{{(random.Next(4) == 0 ? ",\"agent\":" + Pick(["\"researcher\"", "\"nope\"", "1"]) : "")}}}""",
        };
    }

    private string NextCompletionBody() => random.Next(5) switch
    {
        0 => NextJson(5),
        _ => $$"""{"model":{{Pick(["\"sim\"", "\"gpt-x\"", "null", "3"])}},"stream":{{Pick(["true", "false", "\"yes\""])}},"messages":{{NextMessages()}},"max_tokens":{{Pick(["16", "-1", "0", "99999999999999", "\"x\"", "1e308"])}}{{(random.Next(3) == 0 ? ",\"tools\":" + NextJson(4) : "")}}{{(random.Next(4) == 0 ? ",\"n\":" + Pick(["2", "-1", "1000"]) : "")}}}""",
    };

    private string NextMessages()
    {
        if (random.Next(6) == 0)
        {
            return NextJson(4);
        }

        var content = random.Next(40) == 0
            ? Json(new string('x', Pick([20_000, 200_000]))) // one enormous word: the tokenizer's worst case
            : random.Next(3) == 0 ? NextJson(3) : Json(NextString());
        return $$"""[{"role":{{Pick(["\"user\"", "\"system\"", "\"assistant\"", "\"tool\"", "\"\"", "1"])}},"content":{{content}}{{(random.Next(3) == 0 ? ",\"id\":" + Json(Pick(Ids)) : "")}}}]""";
    }

    /// <summary>Any JSON text: nested, wide, deep, with odd numbers, strings and sometimes broken.</summary>
    public string NextJson(int depth)
    {
        var roll = random.Next(40);
        if (roll == 0)
        {
            var n = Pick([65, 100, 1000, 20_000]);
            return new string('[', n) + new string(']', n);
        }

        if (roll == 1)
        {
            var n = Pick([65, 500]);
            return string.Concat(Enumerable.Repeat("{\"a\":", n)) + "1" + new string('}', n);
        }

        if (roll == 2)
        {
            return "{" + string.Join(",", Enumerable.Range(0, Pick([100, 3000])).Select(i => $"\"k{i}\":{i}")) + "}";
        }

        if (roll == 3)
        {
            return Pick(["{", "[1,]", "{\"a\":1,\"a\":2}", "NaN", "{\"a\":undefined}", "\"\\ud800\"", "{\"\\ud800\":1}", "", "nul", "1e400", "-0", "[\"\\u0000\"]", "{\"a\" 1}", "\u00ff"]);
        }

        if (depth <= 0)
        {
            return NextScalar();
        }

        return random.Next(4) switch
        {
            0 => "[" + string.Join(",", Enumerable.Range(0, random.Next(5)).Select(_ => NextJson(depth - 1))) + "]",
            1 => "{" + string.Join(",", Enumerable.Range(0, random.Next(5)).Select(_ => $"{Json(NextString())}:{NextJson(depth - 1)}")) + "}",
            _ => NextScalar(),
        };
    }

    private string NextScalar() => random.Next(6) switch
    {
        0 => Pick(["0", "-1", "1.5", "1e308", "-1e-308", "9223372036854775808", "123456789012345678901234567890", "true", "false", "null"]),
        _ => Json(NextString()),
    };

    /// <summary>A string body, often with unicode edge cases spliced in (written as JSON escapes where they must be).</summary>
    private string NextString()
    {
        var builder = new StringBuilder();
        for (var i = random.Next(0, 4); i > 0; i--)
        {
            builder.Append(random.Next(3) == 0 ? Pick(Unicode) : Pick(["a", "hello", "x y", "<script>", "../", "%s", "{{name}}", "'; DROP", "\\n"]));
        }

        return builder.ToString();
    }

    /// <summary>A JSON string literal whose backslash escapes in the source (\ud800 etc.) are kept as escapes.</summary>
    private static string Json(string text)
    {
        var builder = new StringBuilder("\"");
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\\' && i + 1 < text.Length && (text[i + 1] == 'u' || text[i + 1] == 'n' || text[i + 1] == '"' || text[i + 1] == '\\'))
            {
                builder.Append(c).Append(text[++i]);
            }
            else if (c == '"' || c == '\\')
            {
                builder.Append('\\').Append(c);
            }
            else if (c < 0x20 || char.IsSurrogate(c))
            {
                builder.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.Append('"').ToString();
    }

    private T Pick<T>(T[] items) => items[random.Next(items.Length)];
}
