import type { SessionEvent } from './events.js';
import { readSse } from './sse.js';

export type TransportKind = 'signalr' | 'sse';

/** An error the gateway answered (a problem+json body) or a refusal of the connection. */
export class AiStreamError extends Error {
  readonly status: number;
  readonly code: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(status: number, message: string, code?: string, retryAfterMs?: number) {
    super(message);
    this.name = 'AiStreamError';
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }

  /** Worth trying again: a timeout, a limit, or the gateway or its store being unavailable. */
  get retryable(): boolean {
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }

  static async from(response: Response): Promise<AiStreamError> {
    let problem: { detail?: string; title?: string; code?: string } = {};
    try {
      problem = (await response.json()) as typeof problem;
    } catch {
      // Not problem+json (a proxy's page): the status says enough.
    }
    const retryAfter = Number(response.headers.get('retry-after'));
    return new AiStreamError(response.status, problem.detail ?? problem.title ?? `HTTP ${response.status}`, problem.code,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
  }
}

/** What a transport needs to open one connection to one session. */
export interface OpenArgs {
  client: {
    readonly baseUrl: string;
    readonly clientId: string;
    readonly options: { name?: string; color?: string; accessToken?: unknown };
    token(): Promise<string | undefined>;
  };
  sessionId: string;
  /** Resume after this position (undefined: start from a catch-up snapshot). */
  after: number | undefined;
  fetch: typeof fetch;
  onEvent: (event: SessionEvent) => void;
}

/** An open connection: `ended` settles with why it ended (undefined for a clean close by the server). */
export interface Connected {
  ended: Promise<Error | undefined>;
  close(): void;
  setState?: (state: Record<string, unknown>) => Promise<void>;
  /** When the token it connected with expires (ms since the epoch), if it is a JWT with `exp`. */
  tokenExpiresAt: number | undefined;
}

export type Transport = (args: OpenArgs) => Promise<Connected>;

function identityQuery(args: OpenArgs): URLSearchParams {
  const query = new URLSearchParams({ clientId: args.client.clientId });
  if (args.client.options.name) query.set('name', args.client.options.name);
  if (args.client.options.color) query.set('color', args.client.options.color);
  return query;
}

/** The claims of a JWT's payload (not verified: the gateway verifies), or undefined for an API key or garbage. */
export function jwtClaims(token: string | undefined): Record<string, unknown> | undefined {
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    const binary = atob(payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '='));
    // The payload is UTF-8 (a name like "Zoë"), not Latin-1 as atob's result reads.
    const claims: unknown = JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
    return typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The `exp` of a JWT in ms since the epoch, or undefined (an API key, or no `exp`). */
export function jwtExpiry(token: string | undefined): number | undefined {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === 'number' ? exp * 1000 : undefined;
}

/** SSE over fetch: the token in the Authorization header, the position in Last-Event-ID. */
export const openSse: Transport = async (args) => {
  const token = await args.client.token();
  const abort = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (args.after !== undefined) headers['last-event-id'] = String(args.after);
  const url = `${args.client.baseUrl}/api/sessions/${encodeURIComponent(args.sessionId)}/events?${identityQuery(args)}`;
  const response = await args.fetch(url, { headers, signal: abort.signal, cache: 'no-store' });
  if (!response.ok || !response.body) throw await AiStreamError.from(response);
  const body = response.body;
  const ended = (async (): Promise<Error | undefined> => {
    try {
      for await (const item of readSse(body, abort.signal)) {
        if (item.kind === 'message') args.onEvent(JSON.parse(item.data) as SessionEvent);
      }
      return undefined;
    } catch (error) {
      return abort.signal.aborted ? undefined : (error as Error);
    }
  })();
  return { ended, close: () => abort.abort(), tokenExpiresAt: jwtExpiry(token) };
};

/**
 * SignalR over WebSockets (`@microsoft/signalr`, loaded on first use): negotiation reports refusals with their HTTP
 * status, `Join` resumes after the position, and the hub's `SetState` sets presence on this connection.
 */
export const openSignalR: Transport = async (args) => {
  const signalR = await import('@microsoft/signalr');
  const token = await args.client.token();
  const url = `${args.client.baseUrl}/hubs/sessions?${identityQuery(args)}`;
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(url, {
      transport: signalR.HttpTransportType.WebSockets,
      ...(args.client.options.accessToken ? { accessTokenFactory: async () => (await args.client.token()) ?? '' } : {}),
    })
    .configureLogging(signalR.LogLevel.None)
    .build();
  let finish!: (error: Error | undefined) => void;
  const ended = new Promise<Error | undefined>((resolve) => { finish = resolve; });
  let closing = false;
  connection.on('Event', (sessionId: string, event: SessionEvent) => {
    if (sessionId === args.sessionId) args.onEvent(event);
  });
  connection.on('Dropped', (sessionId: string, reason: string) => {
    if (sessionId !== args.sessionId) return;
    finish(new Error(`dropped: ${reason}`)); // fell behind: resume from the last position
    void connection.stop();
  });
  connection.onclose((error) => finish(closing ? undefined : error));
  try {
    await connection.start();
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    if (typeof status === 'number' && status > 0) throw new AiStreamError(status, (error as Error).message);
    throw error;
  }
  try {
    await connection.invoke('Join', args.sessionId, args.after ?? null);
  } catch (error) {
    closing = true;
    void connection.stop();
    const message = (error as Error).message ?? String(error);
    // The hub refuses a join the credential does not grant, or a bad identity: trying again will not help.
    if (/does not grant|Invalid identity/i.test(message)) throw new AiStreamError(/grant/i.test(message) ? 403 : 400, message);
    throw error;
  }
  return {
    ended,
    close: () => {
      closing = true;
      void connection.stop();
    },
    setState: async (state) => {
      await connection.invoke('SetState', args.sessionId, state);
    },
    tokenExpiresAt: jwtExpiry(token),
  };
};
