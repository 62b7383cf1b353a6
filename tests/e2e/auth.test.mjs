// Authentication with the official clients, against a gateway of its own with a signing key: EventSource passes the
// token in ?access_token=, @microsoft/signalr through accessTokenFactory (negotiate and the WebSocket), and
// @ag-ui/client's HttpAgent in an Authorization header. Without a token, or without the right on the session, each
// is refused before any data flows.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { HttpAgent } from '@ag-ui/client';
import { HttpTransportType, HubConnectionBuilder, LogLevel } from '@microsoft/signalr';
import { EventSource } from 'eventsource';
import { TEST_TIMEOUT_MS, WAIT_MS } from './lib.mjs';

const DLL = process.env.GATEWAY_DLL;
const KEY = randomBytes(32).toString('hex');
let url;
let gateway;

/** An HS256 JWT, as any identity provider would issue it. */
function token(sub, sessions, { scope = '', lifetimeSeconds = 3600 } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub, name: sub, exp: Math.floor(Date.now() / 1000) + lifetimeSeconds, scope, sessions });
  return `${head}.${body}.${createHmac('sha256', KEY).update(`${head}.${body}`).digest('base64url')}`;
}

const freePort = () => new Promise((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

before(async () => {
  assert.ok(DLL, 'GATEWAY_DLL is not set: run the suite with tests/e2e/run.sh');
  url = `http://127.0.0.1:${await freePort()}`;
  gateway = spawn('dotnet', [DLL, '--urls', url], {
    env: {
      ...process.env,
      AiStream__Auth__Jwt__SigningKey: KEY,
      AiStream__Providers__sim__TokensPerSecond: '200',
      AiStream__Providers__sim__TimeToFirstTokenMs: '20',
      Logging__LogLevel__Default: 'Warning',
    },
    stdio: 'ignore',
  });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the authenticated gateway did not become ready');
});

after(() => gateway?.kill());

const sid = (prefix) => `team-${prefix}-${randomUUID().slice(0, 8)}`;

/** The first message (or error) an EventSource gets. */
function firstOf(source) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ kind: 'timeout' }), WAIT_MS);
    source.onmessage = (m) => { clearTimeout(timer); resolve({ kind: 'message', data: JSON.parse(m.data) }); };
    source.onerror = (e) => { clearTimeout(timer); resolve({ kind: 'error', status: e.code }); };
  });
}

test('EventSource with ?access_token= watches; without one, or on a session it has no right to, it is refused', { timeout: TEST_TIMEOUT_MS }, async () => {
  const session = sid('es');
  const alice = token('alice', { 'team-*': ['read'] });

  const allowed = new EventSource(`${url}/api/sessions/${session}/events?access_token=${alice}`);
  const first = await firstOf(allowed);
  allowed.close();
  assert.equal(first.kind, 'message');
  assert.equal(first.data.type, 'MESSAGES_SNAPSHOT');

  const anonymous = new EventSource(`${url}/api/sessions/${session}/events`);
  const refused = await firstOf(anonymous);
  anonymous.close();
  assert.deepEqual(refused, { kind: 'error', status: 401 });

  const elsewhere = new EventSource(`${url}/api/sessions/other-${session}/events?access_token=${alice}`);
  const forbidden = await firstOf(elsewhere);
  elsewhere.close();
  assert.deepEqual(forbidden, { kind: 'error', status: 403 });
});

test('@microsoft/signalr with accessTokenFactory joins (negotiated and direct WebSocket); without a token start() fails with 401', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const session = sid('hub');
  for (const skipNegotiation of [false, true]) {
    const connection = new HubConnectionBuilder()
      .withUrl(`${url}/hubs/sessions`, { accessTokenFactory: () => token('alice', { [session]: ['read', 'write'] }), skipNegotiation, transport: HttpTransportType.WebSockets })
      .configureLogging(LogLevel.None)
      .build();
    t.after(() => connection.stop());
    await connection.start();
    const joined = await connection.invoke('Join', session, null);
    assert.equal(joined.sessionId, session);
    // Write on this session only: another session's Join is a hub error, and nothing of it arrives.
    await assert.rejects(connection.invoke('Join', `other-${session}`, null), /Forbidden/);
  }

  const anonymous = new HubConnectionBuilder().withUrl(`${url}/hubs/sessions`).configureLogging(LogLevel.None).build();
  await assert.rejects(anonymous.start(), /401/);
});

test('@ag-ui/client HttpAgent with an Authorization header runs; a read-only token is refused with 403', { timeout: TEST_TIMEOUT_MS }, async () => {
  const session = sid('agui');
  const writer = new HttpAgent({ url: `${url}/agui`, threadId: session, headers: { Authorization: `Bearer ${token('alice', { [session]: ['write'] })}` } });
  writer.messages = [{ id: 'u1', role: 'user', content: 'hello' }];
  const types = [];
  const original = console.warn;
  console.warn = () => {};
  try {
    await writer.runAgent({ runId: 'r-auth' }, { onEvent: ({ event }) => types.push(event.type) });
  } finally {
    console.warn = original;
  }
  assert.equal(types[0], 'RUN_STARTED');
  assert.equal(types.at(-1), 'RUN_FINISHED');

  const reader = new HttpAgent({ url: `${url}/agui`, threadId: session, headers: { Authorization: `Bearer ${token('bob', { [session]: ['read'] })}` } });
  reader.messages = [{ id: 'u2', role: 'user', content: 'hello' }];
  const quiet = console.error;
  console.error = () => {};
  try {
    await assert.rejects(reader.runAgent({ runId: 'r-denied' }, {}), /403/);
  } finally {
    console.error = quiet;
  }
});
