using System.Text.Json.Nodes;

namespace AiStream.Gateway.Presence;

/// <summary>What the in-memory presence store keeps per session and per member.</summary>
internal sealed partial class InMemoryPresenceStore
{
    private sealed class Member(MemberIdentity identity)
    {
        public MemberIdentity Identity { get; set; } = identity;
        public JsonObject State { get; set; } = new();
        public Dictionary<string, DateTimeOffset> Connections { get; } = new(StringComparer.Ordinal);
        public DateTimeOffset? LeaveAt { get; set; }
        public DateTimeOffset? LastUpdateAt { get; set; }
        public bool UpdatePending { get; set; }
        public bool Announced { get; set; }
    }

    private sealed class SessionMembers : IDisposable
    {
        private readonly List<ITimer> _timers = [];

        public Dictionary<string, Member> Members { get; } = new(StringComparer.Ordinal);

        /// <summary>Serialises this session's presence changes with the events that report them.</summary>
        public SemaphoreSlim Gate { get; } = new(1, 1);

        /// <summary>Set when the sweep forgot this session; late callers look it up again.</summary>
        public bool Removed { get; set; }

        /// <summary>Set from when the session passes CoalesceAbove members until it is back to half of that.</summary>
        public bool Crowded { get; set; }

        /// <summary>Changes counted since the last <c>presence.count</c> of a crowded session.</summary>
        public int Joined { get; set; }

        public int Left { get; set; }

        public int Updated { get; set; }

        /// <summary>Set while changes wait for the next <c>presence.count</c>.</summary>
        public bool CountPending { get; set; }

        public DateTimeOffset LastCountAt { get; set; } = DateTimeOffset.MinValue;

        /// <summary>A one-shot sweep when a grace period or coalescing window ends, so leaves are not late by a sweep interval.</summary>
        public void ScheduleCheck(TimeProvider time, TimeSpan due, Action check)
        {
            var holder = new ITimer?[1];
            var timer = time.CreateTimer(_ =>
            {
                check();
                lock (this)
                {
                    if (holder[0] is { } fired)
                    {
                        _timers.Remove(fired);
                        fired.Dispose();
                    }
                }
            }, null, due < TimeSpan.Zero ? TimeSpan.Zero : due, Timeout.InfiniteTimeSpan);
            holder[0] = timer;
            _timers.Add(timer);
        }

        public void Dispose()
        {
            lock (this)
            {
                foreach (var timer in _timers)
                {
                    timer.Dispose();
                }

                _timers.Clear();
            }
        }
    }
}
