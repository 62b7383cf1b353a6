import type { Member, SessionEvent } from './events.js';
import { Presence } from './presence.js';
import { type TransportKind, type Connected, openSse, openSignalR, AiStreamError } from './transport.js';

export { AiStreamError } from './transport.js';

/** What a UI shows about the connection. */
export type ConnectionStatus = 'connecting' | 'live' | 'reconnecting' | 'offline';

export interface ConnectionState {
  status: ConnectionStatus;
  /** The reconnection attempt (1, 2, …) while reconnecting; 0 otherwise. */
  attempt: number;
  /** The transport in use once live. */
  transport: TransportKind | undefined;
  /** Why the last connection ended or failed, if it did. */
  error: Error | undefined;
}

export interface ClientOptions {
  /** The gateway's address, e.g. `https://gateway.example.com` (default: the page's origin in a browser). */
  baseUrl?: string;
  /**
   * Returns a JWT (or API key) for the gateway. Called before every connection and every request, so a fresh token is
   * used on each reconnect; a JWT is also renewed shortly before its `exp` without losing a single event.
   */
  accessToken?: () => string | undefined | null | Promise<string | undefined | null>;
  /** The member id when authentication is off (with a token, the gateway uses its `sub`). Default: a random id. */
  clientId?: string;
  /** The member's display name when authentication is off. */
  name?: string;
  /** The member's colour (`#rrggbb`) when authentication is off. */
  color?: string;
  /** `auto` (default): SignalR over WebSockets, else SSE. */
  transport?: TransportKind | 'auto';
  /** First reconnection delay cap in ms (default 250); the cap doubles per attempt up to `maxDelayMs`. */
  initialDelayMs?: number;
  /** Largest reconnection delay in ms (default 3000). Each delay is drawn uniformly below the cap (full jitter). */
  maxDelayMs?: number;
  /** Renew a JWT this many ms before it expires (default 30000, at most a tenth of its lifetime). */
  refreshBeforeExpiryMs?: number;
  /** fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

export interface JoinOptions {
  /** Resume after this position instead of starting from a catch-up snapshot. */
  after?: number;
  onEvent?: (event: SessionEvent) => void;
  onState?: (state: ConnectionState) => void;
  /** Called after presence changed (`session.presence` holds who is here). */
  onPresence?: (presence: Presence) => void;
}

/** The body of a run: a plain model, a prompt template with variables, or an agent. */
export interface RunRequest {
  messages?: { role: string; content: string; id?: string }[];
  model?: string;
  prompt?: string;
  variables?: Record<string, unknown>;
  agent?: string;
  [field: string]: unknown;
}

/** A client of one gateway: joins sessions and calls its session API. */
export class AiStreamClient {
  readonly baseUrl: string;
  readonly clientId: string;
  readonly options: Readonly<ClientOptions>;
  private readonly fetcher: typeof fetch;

  constructor(options: ClientOptions = {}) {
    this.options = options;
    const origin = typeof location !== 'undefined' ? location.origin : undefined;
    this.baseUrl = (options.baseUrl ?? origin ?? '').replace(/\/+$/, '');
    if (!this.baseUrl) throw new Error('baseUrl is required outside a browser');
    this.clientId = options.clientId ?? `c-${randomId()}`;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Joins a session: connects, and reconnects and resumes by itself until `close()`. */
  join(sessionId: string, options: JoinOptions = {}): SessionConnection {
    return new SessionConnection(this, sessionId, options);
  }

  /** Starts a run in the session; returns its id. */
  async startRun(sessionId: string, run: RunRequest): Promise<string> {
    const body = await this.request('POST', `${sessionPath(sessionId)}/runs`, run);
    return (body as { runId: string }).runId;
  }

  /** Cancels a run for everyone watching; returns the outcome (`cancelled`, or how it had already ended). */
  async cancelRun(sessionId: string, runId: string): Promise<string> {
    const body = await this.request('POST', `${sessionPath(sessionId)}/runs/${encodeURIComponent(runId)}/cancel`);
    return (body as { outcome?: string } | undefined)?.outcome ?? 'cancelled';
  }

  /**
   * Appends events to the session; returns their positions. With an idempotency key, a retry (this method's own, on
   * a network failure or a 5xx, or the caller's) appends nothing twice.
   */
  async publish(sessionId: string, events: Record<string, unknown>[], options: { idempotencyKey?: string } = {}): Promise<number[]> {
    const headers: Record<string, string> = options.idempotencyKey ? { 'idempotency-key': options.idempotencyKey } : {};
    const attempts = options.idempotencyKey ? 4 : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        const body = await this.request('POST', `${sessionPath(sessionId)}/events`, events, headers);
        return (body as { seqs: number[] }).seqs;
      } catch (error) {
        const retryable = !(error instanceof AiStreamError) || error.retryable;
        if (!retryable || attempt >= attempts) throw error;
        await delay(backoff(attempt, this.options), undefined);
      }
    }
  }

  /** Replaces this member's presence state in the session (typing, viewing…). */
  async setPresenceState(sessionId: string, state: Record<string, unknown>): Promise<void> {
    await this.request('POST', `${sessionPath(sessionId)}/presence/state?clientId=${encodeURIComponent(this.clientId)}`, state);
  }

  /** Everyone present in the session now (the first `limit`). */
  async presence(sessionId: string, limit = 100): Promise<{ members: Member[]; total: number }> {
    return (await this.request('GET', `${sessionPath(sessionId)}/presence?limit=${limit}`)) as { members: Member[]; total: number };
  }

  /** A gateway JSON call with the current token; a problem response becomes an `AiStreamError`. */
  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<unknown> {
    const token = await this.token();
    const response = await this.fetcher(`${this.baseUrl}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok) throw await AiStreamError.from(response);
    const text = await response.text();
    return text ? JSON.parse(text) : undefined;
  }

  /** @internal */
  async token(): Promise<string | undefined> {
    return (await this.options.accessToken?.()) ?? undefined;
  }

  /** @internal */
  get transportFetch(): typeof fetch {
    return this.fetcher;
  }
}

/**
 * One joined session. Events arrive in order, each once, across reconnections: after a drop it waits (exponential
 * backoff with full jitter), reconnects with a fresh token and resumes after the last position it delivered.
 */
export class SessionConnection {
  readonly sessionId: string;
  readonly presence = new Presence();
  state: ConnectionState = { status: 'connecting', attempt: 0, transport: undefined, error: undefined };
  /** The position of the last event delivered. */
  lastSeq: number | undefined;
  /** Resolves when the session is first live; rejects if it goes offline before that. */
  readonly ready: Promise<void>;
  private readonly client: AiStreamClient;
  private readonly options: JoinOptions;
  private readonly closed = new AbortController();
  private current: Connected | undefined;
  private snapshotAt: number | undefined;
  private readonly transport: TransportKind | 'auto';
  private resolveReady!: () => void;
  private rejectReady!: (error: Error) => void;

  constructor(client: AiStreamClient, sessionId: string, options: JoinOptions) {
    this.client = client;
    this.sessionId = sessionId;
    this.options = options;
    this.lastSeq = options.after;
    this.transport = client.options.transport ?? 'auto';
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // observed through onState too
    void this.run();
  }

  /** Starts a run in this session; returns its id. */
  startRun(run: RunRequest): Promise<string> {
    return this.client.startRun(this.sessionId, run);
  }

  /** Cancels a run for everyone. */
  cancelRun(runId: string): Promise<string> {
    return this.client.cancelRun(this.sessionId, runId);
  }

  /** Appends events (idempotently with a key). */
  publish(events: Record<string, unknown>[], options: { idempotencyKey?: string } = {}): Promise<number[]> {
    return this.client.publish(this.sessionId, events, options);
  }

  /** Replaces this member's presence state (over the hub when joined by SignalR, else over HTTP). */
  async setState(state: Record<string, unknown>): Promise<void> {
    if (this.current?.setState) {
      try {
        await this.current.setState(state);
        return;
      } catch {
        // The connection is going away: HTTP still reaches the member.
      }
    }
    await this.client.setPresenceState(this.sessionId, state);
  }

  /** Leaves the session and stops reconnecting. */
  close(): void {
    if (this.closed.signal.aborted) return;
    this.closed.abort();
    this.current?.close();
    this.setState_({ status: 'offline', attempt: 0, transport: undefined, error: undefined });
  }

  private async run(): Promise<void> {
    let attempt = 0;
    let refreshed401 = false;
    let liveAt = 0;
    while (!this.closed.signal.aborted) {
      let failure: Error | undefined;
      let wasLive = false;
      try {
        const [kind, opened] = await this.open();
        if (this.closed.signal.aborted) {
          opened.close();
          break;
        }
        this.current = opened;
        wasLive = true;
        refreshed401 = false;
        liveAt = Date.now();
        this.setState_({ status: 'live', attempt: 0, transport: kind, error: undefined });
        this.resolveReady();
        const renew = this.scheduleRenewal(opened);
        try {
          failure = await opened.ended;
        } finally {
          clearTimeout(renew);
          this.current = undefined;
        }
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
        if (failure instanceof AiStreamError && !failure.retryable) {
          if (failure.status === 401 && this.client.options.accessToken && !refreshed401) {
            refreshed401 = true; // the token may have just expired: try once more with a fresh one
          } else {
            this.setState_({ status: 'offline', attempt: 0, transport: undefined, error: failure });
            this.rejectReady(failure);
            return;
          }
        }
      }
      if (this.closed.signal.aborted) break;
      // Only a connection that stayed up a while starts the count again: one that keeps ending at once (a draining
      // node, a proxy closing it) backs off like any failure instead of reconnecting in a loop.
      if (wasLive && Date.now() - liveAt >= STABLE_MS) attempt = 0;
      attempt++;
      this.setState_({ status: 'reconnecting', attempt, transport: undefined, error: failure });
      // A clean end of a live connection (a planned renewal, a server restart's goodbye) reconnects at once.
      const wait = wasLive && attempt === 1 ? 0 : backoff(attempt, this.client.options, failure);
      await delay(wait, this.closed.signal);
    }
  }

  /**
   * Opens the pinned transport, or in `auto` SignalR over WebSockets and, when that cannot connect for a reason other
   * than the gateway's answer (a proxy refusing upgrades, no WebSocket), SSE in the same attempt. Each reconnection
   * tries WebSockets first again.
   */
  private async open(): Promise<[TransportKind, Connected]> {
    // Browsers and Node 22+ have WebSocket; in Node 20 @microsoft/signalr brings its own (the ws package).
    const node = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
    const kinds: TransportKind[] = this.transport !== 'auto' ? [this.transport]
      : typeof WebSocket !== 'undefined' || node ? ['signalr', 'sse'] : ['sse'];
    for (let i = 0; ; i++) {
      const kind = kinds[i]!;
      try {
        return [kind, await (kind === 'signalr' ? openSignalR : openSse)({
          client: this.client,
          sessionId: this.sessionId,
          after: this.lastSeq,
          fetch: this.client.transportFetch,
          onEvent: (e) => this.deliver(e),
        })];
      } catch (error) {
        if (i + 1 >= kinds.length || error instanceof AiStreamError || this.closed.signal.aborted) throw error;
      }
    }
  }

  /** Reconnects (resuming) shortly before the token expires, so the gateway never has to end the stream. */
  private scheduleRenewal(opened: Connected): ReturnType<typeof setTimeout> | undefined {
    const expiresAt = opened.tokenExpiresAt;
    if (!expiresAt) return undefined;
    const lifetime = expiresAt - Date.now();
    const before = Math.min(this.client.options.refreshBeforeExpiryMs ?? 30_000, lifetime / 10);
    const due = lifetime - before;
    // A token already inside its renewal margin (the caller gave an old one again) is not renewed in a loop: the
    // gateway ends the stream at expiry and the reconnection asks for a fresh token. A timer past 2^31-1 ms would
    // fire at once, so a token valid for weeks is renewed by a later connection instead.
    if (due < MIN_RENEWAL_MS || due > MAX_TIMER_MS) return undefined;
    return setTimeout(() => opened.close(), due);
  }

  private deliver(e: SessionEvent): void {
    if (e.type === 'MESSAGES_SNAPSHOT') {
      this.snapshotAt = e.seq;
      // A catch-up replaces everything before it. One behind the last position means the session's log was reset
      // (a gateway without Redis restarted, or the session expired): positions start again from it.
      if (this.lastSeq !== undefined && e.seq < this.lastSeq) this.lastSeq = Math.max(0, e.seq);
    }
    if (typeof e.seq !== 'number' || e.seq <= 0) {
      // No position: a notice (auth.expired before the gateway closes the stream), or the catch-up of an empty
      // session. Delivered as it is; the resume position is unchanged.
      const changed = this.presence.apply(e);
      this.options.onEvent?.(e);
      if (changed) this.options.onPresence?.(this.presence);
      return;
    }
    if (this.lastSeq !== undefined && e.seq <= this.lastSeq && e.seq !== this.snapshotAt) return; // already delivered
    this.lastSeq = e.seq;
    const presenceChanged = this.presence.apply(e);
    this.options.onEvent?.(e);
    if (presenceChanged) this.options.onPresence?.(this.presence);
  }

  private setState_(state: ConnectionState): void {
    const same = state.status === this.state.status && state.attempt === this.state.attempt && state.transport === this.state.transport;
    this.state = state;
    if (!same) this.options.onState?.(state);
  }
}

/** How long a connection must stay up before a drop counts as a first failure again. */
const STABLE_MS = 5000;
/** The earliest a token renewal reconnects, and the longest timer JavaScript keeps (2^31-1 ms). */
const MIN_RENEWAL_MS = 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;

function sessionPath(sessionId: string): string {
  return `/api/sessions/${encodeURIComponent(sessionId)}`;
}

/** Full jitter: uniform in [0, min(max, initial·2^(attempt-1))); at least what a 429/503's Retry-After asks. */
export function backoff(attempt: number, options: Pick<ClientOptions, 'initialDelayMs' | 'maxDelayMs'>, failure?: Error): number {
  const cap = Math.min(options.maxDelayMs ?? 3000, (options.initialDelayMs ?? 250) * 2 ** Math.min(attempt - 1, 20));
  const jittered = Math.random() * cap;
  const retryAfter = failure instanceof AiStreamError ? failure.retryAfterMs ?? 0 : 0;
  return Math.max(jittered, Math.min(retryAfter, 60_000));
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function randomId(): string {
  return globalThis.crypto.randomUUID().replace(/-/g, '').slice(0, 12);
}


