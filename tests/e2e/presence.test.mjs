// Presence with official clients: an `eventsource` watcher and an @microsoft/signalr connection in one session are
// both members, see each other join, see state updates and see each other leave (after the grace run.sh configures).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HubConnectionBuilder, HubConnectionState, LogLevel } from '@microsoft/signalr';
import { GATEWAY_URL, TEST_TIMEOUT_MS, Waiters, Watcher, sessionId } from './lib.mjs';

const isPresence = (event, name, memberId) => event.type === 'CUSTOM' && event.name === name && event.value?.id === memberId;

async function getPresence(sid) {
  const response = await fetch(`${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/presence`, { signal: AbortSignal.timeout(5000) });
  assert.equal(response.status, 200);
  return response.json();
}

test('an EventSource member and a SignalR member see each other join, update and leave', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('presence');
  const ann = new Watcher(`${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/events?clientId=ann&name=Ann&color=%23e91e63`);
  t.after(() => ann.close());
  await ann.opened();
  await ann.until((ms) => ms.some((m) => isPresence(m.event, 'presence.join', 'ann')), 'Ann to see her own join');

  const bob = new HubConnectionBuilder()
    .withUrl(`${GATEWAY_URL}/hubs/sessions?clientId=bob&name=Bob`)
    .configureLogging(LogLevel.Warning)
    .build();
  const received = [];
  const waiters = new Waiters();
  bob.on('Event', (s, event) => {
    if (s === sid) received.push(event);
    waiters.notify();
  });
  t.after(() => bob.stop());
  await bob.start();
  assert.equal(bob.state, HubConnectionState.Connected);

  // Bob joins from the start of the log, so Ann's earlier join reaches him too; Ann sees Bob's join live.
  const joined = await bob.invoke('Join', sid, 0);
  assert.equal(joined.snapshot, false);
  await waiters.until(() => received.some((e) => isPresence(e, 'presence.join', 'ann')), "Ann's join at Bob");
  await ann.until((ms) => ms.some((m) => isPresence(m.event, 'presence.join', 'bob')), "Bob's join at Ann");
  const annAtBob = received.find((e) => isPresence(e, 'presence.join', 'ann')).value;
  assert.deepEqual(annAtBob, { id: 'ann', name: 'Ann', kind: 'user', connections: 1, state: {}, color: '#e91e63' });
  const bobAtAnn = ann.events.find((e) => isPresence(e, 'presence.join', 'bob')).value;
  assert.deepEqual(bobAtAnn, { id: 'bob', name: 'Bob', kind: 'user', connections: 1, state: {} });

  const presence = await getPresence(sid);
  assert.equal(presence.sessionId, sid);
  assert.equal(presence.total, 2);
  assert.deepEqual(
    presence.members.map((m) => [m.id, m.name, m.kind, m.connections]),
    [
      ['ann', 'Ann', 'user', 1],
      ['bob', 'Bob', 'user', 1],
    ],
  );

  await bob.invoke('SetState', sid, { typing: true });
  await ann.until((ms) => ms.some((m) => isPresence(m.event, 'presence.update', 'bob')), "Bob's state at Ann");
  const update = ann.events.find((e) => isPresence(e, 'presence.update', 'bob'));
  assert.deepEqual(update.value.state, { typing: true });
  assert.equal(update.value.connections, 1);
  await waiters.until(() => received.some((e) => isPresence(e, 'presence.update', 'bob')), 'Bob to see his own update');

  await bob.stop();
  const stoppedAt = Date.now();
  await ann.until((ms) => ms.some((m) => isPresence(m.event, 'presence.leave', 'bob')), "Bob's leave at Ann");
  const leave = ann.events.find((e) => isPresence(e, 'presence.leave', 'bob'));
  assert.equal(leave.value.reason, 'left');
  assert.equal(leave.value.state, undefined);
  assert.ok(Date.now() - stoppedAt >= 500, 'the leave waits for the grace period (1 s in run.sh)');
  assert.deepEqual(
    ann.events.filter((e) => e.type === 'CUSTOM' && e.value?.id === 'bob').map((e) => e.name),
    ['presence.join', 'presence.update', 'presence.leave'],
  );
  const after = await getPresence(sid);
  assert.deepEqual(after.members.map((m) => m.id), ['ann']);
  assert.equal(after.total, 1);
});

test('an EventSource member writes its state with POST presence/state and a late joiner sees it in the catch-up', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('presence-state');
  const url = (clientId, name) => `${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/events?clientId=${clientId}&name=${name}`;
  const ann = new Watcher(url('ann', 'Ann'));
  t.after(() => ann.close());
  await ann.opened();
  await ann.until((ms) => ms.some((m) => isPresence(m.event, 'presence.join', 'ann')), 'Ann to see her own join');

  const post = await fetch(`${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/presence/state?clientId=ann`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ viewing: 'msg-12' }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(post.status, 204);
  await ann.until((ms) => ms.some((m) => isPresence(m.event, 'presence.update', 'ann')), "Ann's update");

  const cy = new Watcher(url('cy', 'Cy'));
  t.after(() => cy.close());
  await cy.until((ms) => ms.some((m) => isPresence(m.event, 'presence.join', 'cy')), "Cy's own join");
  assert.deepEqual(cy.events.slice(0, 3).map((e) => e.type), ['MESSAGES_SNAPSHOT', 'STATE_SNAPSHOT', 'CUSTOM']);
  const snapshot = cy.events[2];
  assert.equal(snapshot.name, 'presence.snapshot');
  assert.equal(snapshot.value.total, 1);
  assert.deepEqual(snapshot.value.members, [{ id: 'ann', name: 'Ann', kind: 'user', connections: 1, state: { viewing: 'msg-12' } }]);

  const stranger = await fetch(`${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/presence/state?clientId=nobody`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"typing":true}',
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(stranger.status, 404);
  assert.equal((await stranger.json()).error.code, 'not_present');
});
