// GET /api/sessions/{id}/events watched with the `eventsource` package (a WHATWG EventSource for Node): two watchers
// see the same run, and a watcher that disconnects mid-run resumes with Last-Event-ID / ?after= without gap or repeat.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import {
  GATEWAY_URL,
  TEST_TIMEOUT_MS,
  Waiters,
  Watcher,
  assertContiguous,
  assertRunShape,
  runSlice,
  sessionEventsUrl,
  sessionId,
  startRun,
} from './lib.mjs';

const idAndData = (m) => ({ id: m.id, data: m.data });
const eventOfMessage = (m) => m.event;
// The catch-up snapshot's two events both carry the head position they summarise (0 for a new session), so
// uniqueness of positions is checked on the other events.
const isSnapshot = (m) => m.event.type === 'MESSAGES_SNAPSHOT' || m.event.type === 'STATE_SNAPSHOT';

test('two EventSource watchers of one session see the same run, event for event', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('es-two');
  const a = new Watcher(sessionEventsUrl(sid));
  const b = new Watcher(sessionEventsUrl(sid));
  t.after(() => {
    a.close();
    b.close();
  });
  await Promise.all([a.opened(), b.opened()]);
  // A new session's catch-up: the (empty) conversation and state, at the head position 0.
  await Promise.all([a, b].map((w) => w.until((ms) => ms.length >= 2, 'the catch-up snapshot')));
  for (const w of [a, b]) {
    assert.deepEqual(w.events.slice(0, 2).map((e) => e.type), ['MESSAGES_SNAPSHOT', 'STATE_SNAPSHOT']);
    assert.deepEqual(w.events[0].messages, []);
  }

  const runId = await startRun(sid, 'hi');
  await Promise.all([a.runEnded(runId), b.runEnded(runId)]);

  const runA = runSlice(a.messages, runId, eventOfMessage);
  const runB = runSlice(b.messages, runId, eventOfMessage);
  assert.deepEqual(runB.map(idAndData), runA.map(idAndData), 'both watchers got the same frames, in the same order');

  for (const m of runA) {
    assert.equal(m.id, String(m.event.seq), 'the SSE id is the event seq');
  }
  assertContiguous(runA.map((m) => m.event.seq), 'watcher A');
  const textA = assertRunShape(runA.map(eventOfMessage), runId, sid);
  const textB = assertRunShape(runB.map(eventOfMessage), runId, sid);
  assert.equal(textB, textA);

  // The user message precedes the run, as its own text message.
  const before = a.events.slice(0, a.events.findIndex((e) => e.type === 'RUN_STARTED')).slice(2).filter((e) => e.type !== 'CUSTOM');
  assert.deepEqual(before.map((e) => e.type), ['TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END']);
  assert.equal(before[0].role, 'user');
  assert.equal(before[1].delta, 'hi');
  // Nothing after the run in a quiet session but the run leaving as an agent member.
  await a.until((ms) => ms.some((m) => m.event.name === 'presence.leave' && m.event.value?.kind === 'agent'), 'the agent leaving');
  const after = a.messages.slice(a.messages.indexOf(runA.at(-1)) + 1).map((m) => m.event);
  assert.deepEqual(after.map((e) => `${e.name}:${e.value?.kind}`), ['presence.leave:agent']);
  t.diagnostic(`${runA.length} events, ${textA.length} characters of text`);
});

/**
 * Watcher B reads a few deltas, is closed, and a new EventSource resumes from its last id (`how` decides whether
 * through the Last-Event-ID header, sent by the `fetch` option, or ?after=). B's frames before and after must be
 * exactly A's.
 */
async function resumeTest(t, how) {
  const sid = sessionId(`es-resume-${how}`);
  const a = new Watcher(sessionEventsUrl(sid));
  const b = new Watcher(sessionEventsUrl(sid));
  let b2;
  t.after(() => {
    a.close();
    b.close();
    b2?.close();
  });
  await Promise.all([a.opened(), b.opened()]);

  const runId = await startRun(sid, 'tell me about streaming');
  const deltasOfRun = (ms) => {
    const start = ms.findIndex((m) => m.event.type === 'RUN_STARTED' && m.event.runId === runId);
    return start === -1 ? 0 : ms.slice(start).filter((m) => m.event.type === 'TEXT_MESSAGE_CONTENT').length;
  };
  await b.until((ms) => deltasOfRun(ms) >= 5, 'five deltas on watcher B');
  b.close();
  const beforeClose = b.messages.slice();
  const last = beforeClose.at(-1).id;
  const runEndedBeforeResume = a.messages.some((m) => m.event.type === 'RUN_FINISHED');
  assert.match(last, /^\d+$/);

  if (how === 'header') {
    b2 = new Watcher(sessionEventsUrl(sid), {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, 'Last-Event-ID': last } }),
    });
  } else {
    b2 = new Watcher(sessionEventsUrl(sid, last));
  }
  await Promise.all([a.runEnded(runId), b2.runEnded(runId)]);

  assert.equal(b2.messages[0].id, String(Number(last) + 1), 'the resumed watch starts right after the last id seen');
  assert.equal(b2.messages.filter(isSnapshot).length, 0, 'a resume inside the log gets a replay, not a snapshot');
  const seenIds = [...beforeClose, ...b2.messages].filter((m) => !isSnapshot(m)).map((m) => m.id);
  assert.equal(new Set(seenIds).size, seenIds.length, 'no seq is delivered twice');

  const runA = runSlice(a.messages, runId, eventOfMessage);
  const runB = runSlice([...beforeClose, ...b2.messages], runId, eventOfMessage);
  assert.deepEqual(runB.map(idAndData), runA.map(idAndData), 'B before and after the reconnect is exactly A');
  assertContiguous(runB.map((m) => m.event.seq), 'watcher B across the reconnect');
  const textA = assertRunShape(runA.map(eventOfMessage), runId, sid);
  const textB = assertRunShape(runB.map(eventOfMessage), runId, sid);
  assert.equal(textB, textA);
  t.diagnostic(`closed after seq ${last}; ${runEndedBeforeResume ? 'the run had already ended' : 'mid-run'}; ${runA.length} events`);
}

test('a watcher closed mid-run resumes with Last-Event-ID (EventSource fetch option): no gap, no repeat, same text', { timeout: TEST_TIMEOUT_MS }, (t) =>
  resumeTest(t, 'header'));

test('a watcher closed mid-run resumes with ?after=<last id>: no gap, no repeat, same text', { timeout: TEST_TIMEOUT_MS }, (t) =>
  resumeTest(t, 'query'));

/**
 * A loopback proxy in front of the gateway that cuts the first watch in the middle of a frame, after `cutAfter`
 * deltas of the run. The EventSource client then reconnects by itself, after the server's retry: hint, sending
 * Last-Event-ID.
 */
async function startCuttingProxy(cutAfter) {
  const requests = [];
  const changes = new Waiters();
  const upstreams = new Set();
  const server = http.createServer(async (req, res) => {
    const record = { at: Date.now(), lastEventId: req.headers['last-event-id'], url: req.url };
    requests.push(record);
    changes.notify();
    const abort = new AbortController();
    upstreams.add(abort);
    res.on('close', () => abort.abort());
    try {
      const headers = { accept: req.headers.accept ?? 'text/event-stream' };
      if (record.lastEventId !== undefined) headers['last-event-id'] = record.lastEventId;
      const upstream = await fetch(`${GATEWAY_URL}${req.url}`, { headers, signal: abort.signal });
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'text/plain' });
      const cut = requests.length === 1;
      const decoder = new TextDecoder();
      let pending = '';
      let runStarted = false;
      let deltas = 0;
      let cutting = false;
      for await (const chunk of upstream.body) {
        pending += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = pending.indexOf('\n\n')) !== -1) {
          const frame = pending.slice(0, end + 2);
          pending = pending.slice(end + 2);
          if (cut && cutting) {
            // Half a frame, then the connection drops: that event must not count as seen.
            res.write(frame.slice(0, Math.floor(frame.length / 2)));
            record.cutAt = Date.now();
            record.partialFrame = frame;
            changes.notify();
            res.socket.destroy();
            abort.abort();
            return;
          }
          res.write(frame);
          const retry = /^retry: (\d+)$/m.exec(frame);
          if (retry) record.retry = Number(retry[1]);
          const id = /^id: (\d+)$/m.exec(frame);
          if (id) record.lastForwardedId = id[1];
          if (frame.includes('"type":"RUN_STARTED"')) runStarted = true;
          if (runStarted && frame.includes('"type":"TEXT_MESSAGE_CONTENT"')) deltas++;
          if (deltas >= cutAfter) cutting = true;
        }
      }
      res.end();
    } catch (error) {
      if (!abort.signal.aborted) res.destroy(error);
    } finally {
      upstreams.delete(abort);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    changes,
    async close() {
      for (const abort of upstreams) abort.abort();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('the EventSource client reconnects by itself after a cut mid-frame, honouring retry: and sending Last-Event-ID', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('es-auto');
  const proxy = await startCuttingProxy(5);
  const reference = new Watcher(sessionEventsUrl(sid));
  const w = new Watcher(`${proxy.url}/api/sessions/${sid}/events`, { autoReconnect: true });
  t.after(async () => {
    reference.close();
    w.close();
    await proxy.close();
  });
  await Promise.all([reference.opened(), w.opened()]);

  const runId = await startRun(sid, 'reconnect please');
  await proxy.changes.until(() => proxy.requests.length >= 2, 'the client to reconnect on its own');
  await Promise.all([reference.runEnded(runId), w.runEnded(runId)]);

  const [first, second] = proxy.requests;
  assert.equal(proxy.requests.length, 2, 'one reconnect');
  assert.equal(first.lastEventId, undefined);
  assert.ok(first.cutAt, 'the proxy cut the first watch');
  assert.equal(first.retry, 2000, 'the gateway sends its retry: hint (AiStream:Transports:SseRetryMilliseconds, default 2000)');
  assert.equal(second.lastEventId, first.lastForwardedId, 'the reconnect sends the id of the last complete event');
  const delay = second.at - first.cutAt;
  // The client's own default is 3000 ms; waiting about 2000 ms shows it took the server's hint.
  assert.ok(delay >= first.retry - 100 && delay < 2900, `reconnected after ${delay} ms, expected about ${first.retry} ms`);
  assert.equal(w.source.readyState, w.source.OPEN);
  assert.ok(w.errors.length >= 1, 'the client reported the dropped connection');

  assert.equal(w.messages.filter(isSnapshot).length, 2, 'one catch-up snapshot, on the first connection only');
  const ids = w.messages.filter((m) => !isSnapshot(m)).map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, 'the half-received frame was not dispatched, and nothing was delivered twice');
  const runRef = runSlice(reference.messages, runId, eventOfMessage);
  const runW = runSlice(w.messages, runId, eventOfMessage);
  assert.deepEqual(runW.map(idAndData), runRef.map(idAndData), 'the reconnected watcher got exactly the uninterrupted one’s frames');
  assertContiguous(runW.map((m) => m.event.seq), 'the reconnected watcher');
  assert.equal(assertRunShape(runW.map(eventOfMessage), runId, sid), assertRunShape(runRef.map(eventOfMessage), runId, sid));
  t.diagnostic(`cut after seq ${first.lastForwardedId}, reconnected after ${delay} ms`);
});
