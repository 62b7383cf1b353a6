// /hubs/sessions with the official @microsoft/signalr client: Join, StartRun, Publish, Leave; the events and positions
// are the ones an SSE watcher of the same session gets.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpTransportType, HubConnectionBuilder, HubConnectionState, LogLevel } from '@microsoft/signalr';
import {
  GATEWAY_URL,
  TEST_TIMEOUT_MS,
  Waiters,
  Watcher,
  assertContiguous,
  assertRunShape,
  isPresence,
  publish,
  runSlice,
  sessionEventsUrl,
  sessionId,
} from './lib.mjs';

/**
 * A hub connection recording every Event(sessionId, event) it gets. By default it negotiates (and asks for stateful
 * reconnect); with skipNegotiation it opens the WebSocket straight away, which passes the same pipeline as a negotiated one.
 */
async function connect(t, { skipNegotiation = false } = {}) {
  const builder = new HubConnectionBuilder();
  if (skipNegotiation) {
    builder.withUrl(`${GATEWAY_URL}/hubs/sessions`, { skipNegotiation: true, transport: HttpTransportType.WebSockets });
  } else {
    builder.withUrl(`${GATEWAY_URL}/hubs/sessions`).withStatefulReconnect();
  }
  const connection = builder.configureLogging(LogLevel.Warning).build();
  const received = [];
  const dropped = [];
  const waiters = new Waiters();
  connection.on('Event', (sid, event) => {
    received.push({ sid, event });
    waiters.notify();
  });
  connection.on('Dropped', (sid, reason) => {
    dropped.push({ sid, reason });
    waiters.notify();
  });
  connection.onclose((error) => waiters.failAll(new Error(`The hub connection closed: ${error?.message ?? 'no error'}`)));
  t.after(() => connection.stop());
  await connection.start();
  assert.equal(connection.state, HubConnectionState.Connected);
  const of = (sid) => received.filter((r) => r.sid === sid).map((r) => r.event);
  return {
    connection,
    received,
    dropped,
    of,
    until: (predicate, what) => waiters.until(predicate, what),
    runEnded: (sid, runId) =>
      waiters.until(() => of(sid).some((e) => e.type === 'RUN_FINISHED' && e.runId === runId), `the end of ${runId} on the hub`),
  };
}

for (const skipNegotiation of [false, true]) {
test(`SignalR Join + StartRun (${skipNegotiation ? 'WebSocket without negotiation' : 'negotiated'}): the run arrives as Event(sessionId, event), identical to the SSE watch`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId(skipNegotiation ? 'hub-lean' : 'hub-run');
  const watcher = new Watcher(sessionEventsUrl(sid));
  t.after(() => watcher.close());
  await watcher.opened();
  const hub = await connect(t, { skipNegotiation });

  // The watcher's own presence.join is the only event so far.
  await watcher.until((ms) => ms.some((m) => isPresence(m.event)), 'the watcher joining');
  const joined = await hub.connection.invoke('Join', sid, null);
  assert.equal(joined.sessionId, sid);
  assert.equal(joined.headSeq, 1, 'the session holds one event: the watcher joining');
  assert.equal(joined.snapshot, true, 'a join without a position gets the catch-up snapshot');
  await hub.until(() => hub.of(sid).length >= 2, 'the catch-up snapshot on the hub');
  assert.deepEqual(hub.of(sid).slice(0, 2).map((e) => e.type), ['MESSAGES_SNAPSHOT', 'STATE_SNAPSHOT']);

  const runId = await hub.connection.invoke('StartRun', sid, { messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(typeof runId, 'string');
  assert.ok(runId.length > 0);
  await Promise.all([hub.runEnded(sid, runId), watcher.runEnded(runId)]);

  const viaHub = runSlice(hub.of(sid), runId);
  const viaSse = runSlice(watcher.events, runId);
  assert.deepEqual(viaHub, viaSse, 'the hub delivers the same events, fields and positions as SSE');
  for (const e of viaHub) {
    assert.equal(typeof e.type, 'string');
    assert.ok(Number.isInteger(e.seq));
  }
  assertContiguous(viaHub.map((e) => e.seq), 'hub events of the run');
  assert.equal(assertRunShape(viaHub, runId, sid), assertRunShape(viaSse, runId, sid));
  // Everything the session logged after the hub's snapshot reached the hub, in order: the user message, then the run.
  // Up to the position both have reached: the agent's presence.leave follows RUN_FINISHED within a millisecond and
  // may already be on one side and not yet on the other.
  const upTo = Math.min(...[hub.of(sid), watcher.events].map((es) => Math.max(...es.map((e) => e.seq))));
  const hubLog = hub.of(sid).filter((e) => e.seq > joined.headSeq && e.seq <= upTo);
  assert.deepEqual(hubLog, watcher.events.filter((e) => e.seq > joined.headSeq && e.seq <= upTo));
  const spoken = hubLog.filter((e) => !isPresence(e));
  assert.deepEqual(spoken.slice(0, 3).map((e) => e.type), ['TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END']);
  assert.equal(spoken[1].delta, 'hi');
  assert.deepEqual(hub.dropped, []);
  t.diagnostic(`${viaHub.length} events over the hub`);
});
}

test('SignalR Publish returns the position the event arrives with; Leave stops delivery', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('hub-pub');
  const other = sessionId('hub-other');
  const watcher = new Watcher(sessionEventsUrl(sid));
  t.after(() => watcher.close());
  await watcher.opened();
  const hub = await connect(t);
  await hub.connection.invoke('Join', sid, null);
  await hub.connection.invoke('Join', other, null); // one connection, many sessions

  const head = (await (await fetch(`${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}`)).json()).headSeq;
  const seq = await hub.connection.invoke('Publish', sid, { type: 'CUSTOM', name: 'x', value: 1 });
  assert.equal(typeof seq, 'number');
  assert.equal(seq, head + 1, 'the next position of the session');
  await hub.until(() => hub.of(sid).some((e) => e.seq === seq), `seq ${seq} on the hub`);
  await watcher.until((ms) => ms.some((m) => m.event.seq === seq), `seq ${seq} on SSE`);
  const custom = hub.of(sid).filter((e) => e.type === 'CUSTOM' && !isPresence(e));
  assert.equal(custom.length, 1);
  assert.equal(custom[0].seq, seq);
  assert.equal(custom[0].name, 'x');
  assert.equal(custom[0].value, 1);
  assert.ok(Number.isInteger(custom[0].timestamp));
  assert.deepEqual(watcher.events.find((e) => e.seq === seq), custom[0]);
  assert.equal(watcher.messages.find((m) => m.event.seq === seq).id, String(seq));

  const seq2 = await hub.connection.invoke('Publish', sid, { type: 'CUSTOM', name: 'y', value: { nested: [1, 2] } });
  assert.equal(seq2, seq + 1);
  await hub.until(() => hub.of(sid).some((e) => e.seq === seq2), `seq ${seq2} on the hub`);
  assert.deepEqual(hub.of(sid).find((e) => e.seq === seq2).value, { nested: [1, 2] });

  await hub.connection.invoke('Leave', sid);
  const [afterLeave] = await publish(sid, { type: 'CUSTOM', name: 'after-leave', value: 2 });
  assert.equal(afterLeave, seq2 + 1);
  await watcher.until((ms) => ms.some((m) => m.event.seq === afterLeave), `seq ${afterLeave} on SSE`);
  // A barrier on the same connection: the other session's event arrives after the gateway handled the leave.
  const [barrier] = await publish(other, { type: 'CUSTOM', name: 'barrier', value: 3 });
  await hub.until(() => hub.of(other).some((e) => e.seq === barrier), 'the barrier event of the other session');
  assert.equal(hub.of(sid).some((e) => e.seq >= afterLeave), false, 'nothing of the left session after Leave');
  assert.deepEqual(hub.of(sid).filter((e) => e.type === 'CUSTOM' && !isPresence(e)).map((e) => e.seq), [seq, seq2]);

  // The hub refuses what the HTTP endpoint refuses.
  await assert.rejects(hub.connection.invoke('Publish', sid, { type: 'NOT_AN_EVENT' }), /Invalid event/);
  await assert.rejects(hub.connection.invoke('Join', 'not a valid id', null), /session id/);
  await assert.rejects(hub.connection.invoke('StartRun', sid, { prompt: 'no-such-template' }), /no-such-template/);
});

test('SignalR Join(sessionId, afterSeq) replays exactly the events after that position, then the live tail', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('hub-after');
  const seqs = await publish(sid, [1, 2, 3, 4, 5].map((n) => ({ type: 'CUSTOM', name: 'n', value: n })));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  const hub = await connect(t);
  const joined = await hub.connection.invoke('Join', sid, 2);
  assert.equal(joined.headSeq, 5);
  assert.equal(joined.snapshot, false, 'a position inside the log gets a replay, not a snapshot');
  await hub.until(() => hub.of(sid).length >= 3, 'the replay');
  const [live] = await publish(sid, { type: 'CUSTOM', name: 'n', value: 6 });
  await hub.until(() => hub.of(sid).some((e) => e.seq === live), 'the live event');
  // The replay, the hub's own presence.join (seq 6), then the live event.
  assert.deepEqual(hub.of(sid).filter((e) => !isPresence(e)).map((e) => [e.seq, e.value]), [[3, 3], [4, 4], [5, 5], [7, 6]]);
  assert.deepEqual(hub.of(sid).map((e) => e.seq), [3, 4, 5, 6, 7]);
});
