import type { Member, SessionEvent } from './events.js';

/**
 * Who is in a session, folded from its presence events: `presence.snapshot` (in every catch-up), `presence.join`,
 * `presence.update`, `presence.leave`, and `presence.count` (a crowded session counts changes instead of announcing
 * each; `total` then holds the count and `members` the last list the gateway gave).
 */
export class Presence {
  readonly members = new Map<string, Member>();
  /** The number of members when the session is crowded (counted), else undefined: `members.size` is the count. */
  total: number | undefined;

  /** Folds one event in; true when presence changed. */
  apply(e: SessionEvent): boolean {
    if (e.type !== 'CUSTOM' || !e.name.startsWith('presence.')) return false;
    const value = (e.value ?? {}) as Record<string, unknown>;
    switch (e.name) {
      case 'presence.snapshot':
        this.members.clear();
        for (const m of (value.members as Member[] | undefined) ?? []) this.members.set(m.id, m);
        this.total = value.counted ? (value.total as number) : undefined;
        return true;
      case 'presence.join':
      case 'presence.update': {
        const m = value as unknown as Member;
        this.members.set(m.id, m);
        if (e.name === 'presence.join') this.total = undefined;
        return true;
      }
      case 'presence.leave':
        this.members.delete((value as unknown as Member).id);
        this.total = undefined;
        return true;
      case 'presence.count':
        this.total = value.members as number;
        return true;
      default:
        return false;
    }
  }

  /** The members sorted for display: people first, then agents, each by name. */
  list(): Member[] {
    return [...this.members.values()].sort((a, b) =>
      (a.kind === 'agent' ? 1 : 0) - (b.kind === 'agent' ? 1 : 0) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }

  get count(): number {
    return this.total ?? this.members.size;
  }
}
