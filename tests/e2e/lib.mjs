// Shared helpers of the end-to-end tests. Not a test file: run.sh runs only *.test.mjs.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { EventSource } from 'eventsource';

export const GATEWAY_URL = (process.env.GATEWAY_URL ?? '').replace(/\/+$/, '');
if (!GATEWAY_URL) {
  throw new Error('GATEWAY_URL is not set: run the suite with tests/e2e/run.sh, or set it to a running gateway.');
}

/** Longest any single wait in a test may take. */
export const WAIT_MS = 10_000;

/** Per-test timeout handed to node:test. */
export const TEST_TIMEOUT_MS = 15_000;

/**
 * Tests whose gateway bug is known are skipped with the bug as the reason. E2E_RUN_KNOWN_BUGS=1 runs them anyway,
 * to check a fix.
 */
export const knownBug = (reason) => (process.env.E2E_RUN_KNOWN_BUGS === '1' ? false : `bug: ${reason}`);

/** A session id nobody else uses: every test works in its own sessions. */
export function sessionId(prefix) {
  return `e2e-${prefix}-${randomUUID().slice(0, 12)}`;
}

export function sessionEventsUrl(sid, after) {
  const url = `${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/events`;
  return after === undefined ? url : `${url}?after=${after}`;
}

/**
 * Resolves when predicate() is true, re-checked whenever notify() is called; rejects after `ms` with `what`.
 * Used to await events instead of sleeping.
 */
export class Waiters {
  #waiters = new Set();

  notify() {
    for (const w of [...this.#waiters]) {
      let done = false;
      try {
        done = w.predicate();
      } catch (error) {
        this.#waiters.delete(w);
        clearTimeout(w.timer);
        w.reject(error);
        continue;
      }
      if (done) {
        this.#waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve();
      }
    }
  }

  until(predicate, what, ms = WAIT_MS) {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { predicate, resolve, reject };
      w.timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(new Error(`Timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      this.#waiters.add(w);
    });
  }

  failAll(error) {
    for (const w of [...this.#waiters]) {
      this.#waiters.delete(w);
      clearTimeout(w.timer);
      w.reject(error);
    }
  }
}

/**
 * A watcher of a session with the `eventsource` package. Records every message as { id, data, event } where id is
 * the MessageEvent's lastEventId, data its raw data and event the parsed JSON.
 */
export class Watcher {
  /** @type {{ id: string, data: string, event: any }[]} */
  messages = [];
  errors = [];
  opens = 0;
  waiters = new Waiters();

  /**
   * @param {string} url
   * @param {import('eventsource').EventSourceInit & { autoReconnect?: boolean }} [init]
   */
  constructor(url, init = {}) {
    const { autoReconnect = false, ...options } = init;
    this.source = new EventSource(url, options);
    this.source.onopen = () => {
      this.opens++;
      this.waiters.notify();
    };
    this.source.onmessage = (m) => {
      let event;
      try {
        event = JSON.parse(m.data);
      } catch (error) {
        this.waiters.failAll(new Error(`A data line is not JSON: ${m.data}`));
        return;
      }
      this.messages.push({ id: m.lastEventId, data: m.data, event });
      this.waiters.notify();
    };
    this.source.onerror = (e) => {
      this.errors.push(e);
      // The client retries by itself; unless a test relies on that, an error ends the watch at once.
      if (!autoReconnect) {
        this.source.close();
        this.waiters.failAll(new Error(`EventSource error on ${url}: ${e?.message ?? e?.code ?? 'unknown'}`));
      } else {
        this.waiters.notify();
      }
    };
  }

  get events() {
    return this.messages.map((m) => m.event);
  }

  opened(ms = WAIT_MS) {
    return this.waiters.until(() => this.opens > 0, 'the EventSource to open', ms);
  }

  until(predicate, what, ms = WAIT_MS) {
    return this.waiters.until(() => predicate(this.messages), what, ms);
  }

  /** Resolves when the run `runId` ended (RUN_FINISHED or RUN_ERROR). */
  runEnded(runId, ms = WAIT_MS) {
    return this.until((ms_) => ms_.some((m) => isRunEnd(m.event, runId)), `the end of run ${runId}`, ms);
  }

  close() {
    this.source.close();
  }
}

/** Presence events (CUSTOM presence.*) are in the log with everything else; run checks look past them. */
export function isPresence(event) {
  return event.type === 'CUSTOM' && typeof event.name === 'string' && event.name.startsWith('presence.');
}

export function isRunEnd(event, runId) {
  return (event.type === 'RUN_FINISHED' && event.runId === runId) || (event.type === 'RUN_ERROR' && (event.runId === undefined || event.runId === runId));
}

/** The items from the RUN_STARTED of `runId` to its end, both included. `eventOf` maps an item to its event. */
export function runSlice(items, runId, eventOf = (x) => x) {
  const start = items.findIndex((x) => eventOf(x).type === 'RUN_STARTED' && eventOf(x).runId === runId);
  assert.notEqual(start, -1, `RUN_STARTED of ${runId} was not seen`);
  const end = items.findIndex((x, i) => i > start && isRunEnd(eventOf(x), runId));
  assert.notEqual(end, -1, `the end of ${runId} was not seen`);
  return items.slice(start, end + 1);
}

/** Checks the shape of one assistant run and returns its text. */
export function assertRunShape(events, runId, threadId) {
  events = events.filter((e) => !isPresence(e));
  assert.ok(events.length >= 5, `a run has at least RUN_STARTED, a text message of one delta and RUN_FINISHED; got ${events.length} events`);
  const first = events[0];
  const last = events.at(-1);
  assert.equal(first.type, 'RUN_STARTED');
  assert.equal(first.runId, runId);
  assert.equal(first.threadId, threadId);
  assert.equal(last.type, 'RUN_FINISHED', `the run ended with ${JSON.stringify(last)}`);
  assert.equal(last.runId, runId);
  assert.equal(last.threadId, threadId);

  const middle = events.slice(1, -1);
  assert.equal(middle[0].type, 'TEXT_MESSAGE_START');
  assert.equal(middle[0].role, 'assistant');
  const messageId = middle[0].messageId;
  assert.ok(typeof messageId === 'string' && messageId.length > 0);
  assert.equal(middle.at(-1).type, 'TEXT_MESSAGE_END');
  assert.equal(middle.at(-1).messageId, messageId);
  const contents = middle.slice(1, -1);
  assert.ok(contents.length >= 2, `the simulated model streams word by word; got ${contents.length} deltas`);
  for (const e of contents) {
    assert.equal(e.type, 'TEXT_MESSAGE_CONTENT', `only text deltas between start and end, got ${JSON.stringify(e)}`);
    assert.equal(e.messageId, messageId);
    assert.equal(typeof e.delta, 'string');
    assert.ok(e.delta.length > 0);
  }
  for (const e of events) {
    assert.ok(Number.isInteger(e.timestamp), `timestamp is integer milliseconds: ${JSON.stringify(e)}`);
  }
  const text = contents.map((e) => e.delta).join('');
  assert.ok(text.trim().length > 0);
  return text;
}

/** Positions of consecutive events: strictly increasing and, within one run in a quiet session, without a hole. */
export function assertContiguous(seqs, what) {
  for (let i = 1; i < seqs.length; i++) {
    assert.equal(seqs[i], seqs[i - 1] + 1, `${what}: seq ${seqs[i]} follows ${seqs[i - 1]}: a gap or a repeat`);
  }
}

export async function postJson(path, body, headers = {}) {
  const response = await fetch(`${GATEWAY_URL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  const text = await response.text();
  let json;
  try {
    json = text.length > 0 ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/** POST /api/sessions/{id}/runs; asserts 202 and returns the run id. */
export async function startRun(sid, content = 'hi') {
  const r = await postJson(`/api/sessions/${encodeURIComponent(sid)}/runs`, { messages: [{ role: 'user', content }] });
  assert.equal(r.status, 202, `starting a run answers 202, got ${r.status}: ${r.text}`);
  assert.equal(typeof r.json?.runId, 'string');
  assert.ok(r.json.runId.length > 0);
  return r.json.runId;
}

/** POST /api/sessions/{id}/events; asserts 201 and returns the positions. */
export async function publish(sid, events) {
  const r = await postJson(`/api/sessions/${encodeURIComponent(sid)}/events`, events);
  assert.equal(r.status, 201, `publishing answers 201, got ${r.status}: ${r.text}`);
  assert.ok(Array.isArray(r.json?.seqs));
  return r.json.seqs;
}

/**
 * Reads a text/event-stream response body into frames { id, data, retry, comments } with a spec-following parser
 * (fields split at the first colon, one optional space removed, CR/LF/CRLF line ends, data lines joined by LF).
 * Calls onFrame for each dispatched frame; resolves with all frames when the body ends.
 */
export async function readSse(body, onFrame = () => {}) {
  const decoder = new TextDecoder();
  const frames = [];
  let buffer = '';
  let frame = { id: undefined, data: [], retry: undefined, comments: [] };
  const dispatch = () => {
    if (frame.data.length > 0 || frame.id !== undefined || frame.retry !== undefined || frame.comments.length > 0) {
      const f = { ...frame, data: frame.data.length > 0 ? frame.data.join('\n') : undefined };
      frames.push(f);
      onFrame(f);
    }
    frame = { id: undefined, data: [], retry: undefined, comments: [] };
  };
  const line = (text) => {
    if (text === '') return dispatch();
    if (text.startsWith(':')) return void frame.comments.push(text.slice(1).trimStart());
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') frame.data.push(value);
    else if (field === 'id') frame.id = value;
    else if (field === 'retry') frame.retry = Number(value);
    else frame.other = [...(frame.other ?? []), field];
  };
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let match;
    while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (match[0] === '\r' && match.index === buffer.length - 1) break;
      line(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
    }
  }
  return frames;
}

/** A session's log read over SSE from its start (`?after=0`) until `until(events)` holds; returns the events. */
export async function readSessionLog(url, sid, until, headers = {}) {
  const stop = new AbortController();
  const response = await fetch(`${url}/api/sessions/${sid}/events?after=0`, { headers, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(30_000)]) });
  assert.equal(response.status, 200);
  const events = [];
  await readSse(response.body, (frame) => {
    if (frame.data === undefined || stop.signal.aborted) return;
    events.push(JSON.parse(frame.data));
    if (until(events)) stop.abort();
  }).catch((error) => { if (!stop.signal.aborted) throw error; });
  return events;
}

/** The assistant text a run wrote, as the session log has it. */
export function runText(events, runId) {
  const ids = new Set(events.filter((e) => e.type === 'TEXT_MESSAGE_START' && e.role === 'assistant').map((e) => e.messageId));
  let inRun = false;
  let text = '';
  for (const e of events) {
    if (e.type === 'RUN_STARTED') inRun = e.runId === runId;
    if (inRun && e.type === 'TEXT_MESSAGE_CONTENT' && ids.has(e.messageId)) text += e.delta;
  }
  return text;
}
