namespace AiStream.Gateway.Security;

/// <summary>
/// Session-id patterns of the <c>sessions</c> capability (Ably's model): <c>*</c> matches any run of characters,
/// everything else itself. Written by hand because a glob library would bring a file-system notion of separators, and
/// a regex built from client input is a denial-of-service risk; this match is linear with backtracking bounded by the
/// last star (at most 256 × 128 steps).
/// </summary>
internal static class SessionPattern
{
    /// <summary>Longest pattern accepted.</summary>
    public const int MaxLength = 256;

    /// <summary>Whether <paramref name="pattern"/> is a usable pattern: session-id characters and <c>*</c>.</summary>
    public static bool IsValid(string pattern) =>
        pattern.Length is > 0 and <= MaxLength && pattern.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or ':' or '-' or '*');

    /// <summary>Whether <paramref name="sessionId"/> matches <paramref name="pattern"/>.</summary>
    public static bool Matches(string pattern, string sessionId)
    {
        int p = 0, s = 0, star = -1, mark = 0;
        while (s < sessionId.Length)
        {
            if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = s;
            }
            else if (p < pattern.Length && pattern[p] == sessionId[s])
            {
                p++;
                s++;
            }
            else if (star >= 0)
            {
                p = star + 1;
                s = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
