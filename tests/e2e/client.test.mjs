// The TypeScript client (src/clients/typescript, built by run.sh) against real gateway processes: resuming after the
// network cuts the connection (no gap, no duplicate) on both transports, token refresh across expiries, presence,
// cancel, the conversation model on a recorded agent trace, and its types checked with tsc --noEmit.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { AiStreamClient, Conversation, isSessionEvent } from '../../src/clients/typescript/dist/index.js';
import { GATEWAY_URL, sessionId } from './lib.mjs';
import { eventually, jwt, signingKey, sleep, startGateway, startProxy } from './processes.mjs';

const CLIENTS = fileURLToPath(new URL('../../src/clients/', import.meta.url));

/** Every event a join delivers, in order, with the states it went through. */
function record(client, sid, options = {}) {
  const events = [];
  const states = [];
  const connection = client.join(sid, {
    ...options,
    onEvent: (e) => { events.push(e); options.onEvent?.(e); },
    onState: (s) => states.push(s.status === 'reconnecting' ? `reconnecting:${s.attempt}` : s.status),
  });
  return { connection, events, states };
}

const textOf = (events, runId) => {
  const ids = new Set();
  let text = '';
  let inRun = false;
  for (const e of events) {
    if (e.type === 'RUN_STARTED') inRun = e.runId === runId;
    if (inRun && e.type === 'TEXT_MESSAGE_START' && e.role !== 'user') ids.add(e.messageId);
    if (e.type === 'TEXT_MESSAGE_CONTENT' && ids.has(e.messageId)) text += e.delta;
  }
  return text;
};

/** Positions after the catch-up are each one more than the last: no gap, no duplicate. */
function assertContiguous(events, what) {
  const live = events.filter((e) => e.seq > 0);
  const start = live.findLastIndex((e) => e.type === 'MESSAGES_SNAPSHOT');
  const snapshotSeq = start < 0 ? undefined : live[start].seq;
  let last = start < 0 ? live[0].seq - 1 : snapshotSeq;
  for (const e of live.slice(start + 1)) {
    if (e.seq === snapshotSeq) continue; // the rest of the catch-up, all at the head it summarises
    assert.equal(e.seq, last + 1, `${what}: position ${last} then ${e.seq} (${e.type})`);
    last = e.seq;
  }
}

let slow;
before(async () => { slow = await startGateway({ AiStream__Providers__sim__TokensPerSecond: '25' }); });
after(() => slow?.kill());

for (const transport of ['sse', 'signalr']) {
  test(`${transport}: the network cuts the connection twice mid-run; the client resumes with no gap, no duplicate and the same text`, { timeout: 60_000 }, async (t) => {
    const proxy = await startProxy(slow.url);
    t.after(() => proxy.close());
    const sid = sessionId(`client-cut-${transport}`);
    const reference = record(new AiStreamClient({ baseUrl: slow.url, transport: 'sse', name: 'Reference' }), sid);
    const cut = record(new AiStreamClient({ baseUrl: proxy.url, transport, name: 'Cut', maxDelayMs: 1000 }), sid);
    t.after(() => { reference.connection.close(); cut.connection.close(); });
    await Promise.all([reference.connection.ready, cut.connection.ready]);

    const runId = await reference.connection.startRun({ messages: [{ role: 'user', content: 'Tell me about streaming, latency, backpressure and failures' }] });
    for (let i = 0; i < 2; i++) {
      await eventually('some text', () => textOf(cut.events, runId).length > 40 * (i + 1));
      const seen = cut.states.length;
      proxy.cut();
      const cutAt = Date.now();
      await eventually('reconnecting, then live again', () => {
        const since = cut.states.slice(seen);
        // The first cut reconnects at once; the second, within seconds of it, after a short backoff (attempt 2).
        return since.includes(`reconnecting:${i + 1}`) && since.at(-1) === 'live';
      }, 5000);
      assert.ok(Date.now() - cutAt < 5000, 'healed within 5 s');
    }
    const ended = (events) => events.some((e) => e.type === 'RUN_FINISHED' && e.runId === runId);
    await eventually('the run to end for both', () => ended(reference.events) && ended(cut.events), 30_000);

    assert.ok(cut.states.includes('reconnecting:1'), cut.states.join(','));
    assert.equal(cut.states.at(-1), 'live');
    assertContiguous(cut.events, 'the cut client');
    assert.equal(textOf(cut.events, runId), textOf(reference.events, runId));
    assert.ok(textOf(cut.events, runId).length > 100);
  });
}

test('auto transport: behind a proxy that refuses WebSocket upgrades, the client joins over SSE instead', { timeout: 30_000 }, async (t) => {
  // An HTTP reverse proxy that forwards requests (streamed both ways) but closes every WebSocket upgrade, as some
  // corporate proxies do.
  const target = new URL(GATEWAY_URL);
  const proxy = createServer((req, res) => {
    const upstream = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy()); // a watch the client closed must not stay open upstream
    req.pipe(upstream);
  });
  proxy.on('upgrade', (req, socket) => socket.destroy());
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => { proxy.closeAllConnections(); proxy.close(); });
  const sid = sessionId('client-auto');
  const watch = record(new AiStreamClient({ baseUrl: `http://127.0.0.1:${proxy.address().port}` }), sid);
  t.after(() => watch.connection.close());
  await watch.connection.ready;
  assert.equal(watch.connection.state.transport, 'sse');
  const runId = await watch.connection.startRun({ messages: [{ role: 'user', content: 'hi' }] });
  await eventually('the run', () => watch.events.some((e) => e.type === 'RUN_FINISHED' && e.runId === runId));

  // Straight to the gateway, auto picks SignalR.
  const direct = record(new AiStreamClient({ baseUrl: GATEWAY_URL }), sid);
  t.after(() => direct.connection.close());
  await direct.connection.ready;
  assert.equal(direct.connection.state.transport, 'signalr');
});

test('token refresh: a watch outlives several short-lived tokens, renewed before each expiry, with no gap', { timeout: 60_000 }, async (t) => {
  const key = signingKey();
  const gateway = await startGateway({ AiStream__Auth__Jwt__SigningKey: key, AiStream__Providers__sim__TokensPerSecond: '10' });
  t.after(() => gateway.kill());
  const sid = sessionId('client-token');
  let issued = 0;
  const client = new AiStreamClient({ baseUrl: gateway.url, transport: 'sse', accessToken: () => { issued++; return jwt(key, 'ann', { lifetimeSeconds: 3 }); } });
  const watch = record(client, sid);
  t.after(() => watch.connection.close());
  await watch.connection.ready;
  const runId = await client.startRun(sid, { messages: [{ role: 'user', content: 'Tell me about streaming, latency, backpressure and failures' }] });
  await eventually('the run to end', () => watch.events.some((e) => e.type === 'RUN_FINISHED' && e.runId === runId), 40_000);

  assert.ok(issued >= 4, `a token per connection and request (${issued})`);
  assert.equal(watch.events.filter((e) => e.type === 'CUSTOM' && e.name === 'auth.expired').length, 0, 'renewed before the gateway had to end it');
  assert.ok(watch.states.filter((s) => s === 'live').length >= 2, `reconnected with fresh tokens: ${watch.states}`);
  assertContiguous(watch.events, 'the refreshed watch');
  assert.ok(textOf(watch.events, runId).length > 100);

  // No token at all: the join goes offline with the gateway's 401, and does not retry forever.
  const refused = record(new AiStreamClient({ baseUrl: gateway.url, transport: 'sse' }), sid);
  await assert.rejects(refused.connection.ready, (error) => error.status === 401);
  assert.equal(refused.connection.state.status, 'offline');
});

test('presence: two clients see each other join, type and leave', { timeout: 30_000 }, async (t) => {
  const sid = sessionId('client-presence');
  const ann = record(new AiStreamClient({ baseUrl: GATEWAY_URL, clientId: 'ann', name: 'Ann', transport: 'signalr' }), sid);
  await ann.connection.ready;
  const bob = record(new AiStreamClient({ baseUrl: GATEWAY_URL, clientId: 'bob', name: 'Bob', color: '#123456', transport: 'sse' }), sid);
  t.after(() => { ann.connection.close(); bob.connection.close(); });
  await bob.connection.ready;
  await eventually('Ann to see Bob', () => ann.connection.presence.members.get('bob')?.color === '#123456');
  await eventually('Bob to see Ann and himself', () => [...bob.connection.presence.members.keys()].sort().join() === 'ann,bob');

  await bob.connection.setState({ typing: true });
  await eventually('Ann to see Bob typing', () => ann.connection.presence.members.get('bob')?.state?.typing === true);
  await ann.connection.setState({ viewing: 'msg-1' });
  await eventually('Bob to see what Ann views', () => bob.connection.presence.members.get('ann')?.state?.viewing === 'msg-1');

  // Publishing with an idempotency key: a retry appends nothing twice.
  const seqs = await bob.connection.publish([{ type: 'CUSTOM', name: 'note.added', value: { text: 'hi' } }], { idempotencyKey: `k-${sid}` });
  assert.deepEqual(await bob.connection.publish([{ type: 'CUSTOM', name: 'note.added', value: { text: 'hi' } }], { idempotencyKey: `k-${sid}` }), seqs);
  await eventually('Ann to see the note once', () => ann.events.filter((e) => e.name === 'note.added').length === 1);
  await sleep(300);
  assert.deepEqual(ann.events.filter((e) => e.name === 'note.added').map((e) => e.seq), seqs);

  bob.connection.close();
  await eventually('Bob to leave', () => !ann.connection.presence.members.has('bob'), 10_000);
  const leave = ann.events.find((e) => e.type === 'CUSTOM' && e.name === 'presence.leave' && e.value.id === 'bob');
  assert.equal(leave.value.reason, 'left');
});

test('cancel: a run cancelled by one client ends as cancelled for every watcher', { timeout: 30_000 }, async (t) => {
  const sid = sessionId('client-cancel');
  const one = record(new AiStreamClient({ baseUrl: slow.url, transport: 'signalr' }), sid);
  const two = record(new AiStreamClient({ baseUrl: slow.url, transport: 'sse' }), sid);
  t.after(() => { one.connection.close(); two.connection.close(); });
  await Promise.all([one.connection.ready, two.connection.ready]);
  const runId = await one.connection.startRun({ messages: [{ role: 'user', content: 'Tell me about streaming gateways in detail' }] });
  await eventually('text', () => textOf(two.events, runId).length > 10);
  assert.equal(await one.connection.cancelRun(runId), 'cancelled');
  for (const w of [one, two]) {
    const end = await eventually('the end', () => w.events.find((e) => e.type === 'RUN_FINISHED' && e.runId === runId));
    assert.deepEqual(end.outcome, { type: 'cancelled', reason: 'requested' });
  }
});

test('the conversation model: a recorded agent trace folds to messages, tool calls with results, steps and state; a late joiner gets the same', { timeout: 30_000 }, async (t) => {
  const sid = sessionId('client-fold');
  const client = new AiStreamClient({ baseUrl: GATEWAY_URL });
  const whole = record(client, sid);
  t.after(() => whole.connection.close());
  await whole.connection.ready;
  const runId = await client.startRun(sid, { agent: 'researcher', messages: [{ role: 'user', content: 'What is 17 * 23? Write the answer to the findings.' }] });
  await eventually('the run to end', () => whole.events.some((e) => e.type === 'RUN_FINISHED' && e.runId === runId));

  // Every event has the shape the client's types declare.
  const unknown = whole.events.filter((e) => !isSessionEvent(e));
  assert.deepEqual(unknown, []);

  const folded = new Conversation();
  for (const e of whole.events) folded.apply(e);
  const view = (c) => c.visibleMessages().map((m) => ({ role: m.role, content: m.content, tools: m.toolCalls.map((x) => `${x.name}(${x.args}) → ${x.result}`) }));
  const shown = view(folded);
  assert.equal(shown[0].role, 'user');
  assert.match(shown.at(-1).content, /calculate gave 391/);
  assert.deepEqual([...folded.toolCalls.values()].map((c) => `${c.name}(${c.args}) → ${c.result}`),
    ['calculate({"expression":"17 * 23"}) → 391', 'write_state({"path":"/findings","value":"\\"391\\""}) → Set /findings to "391".']);
  assert.deepEqual(folded.trace.filter((x) => x.kind === 'step').map((x) => `${x.name}:${x.finished}`),
    ['model:1:true', 'tool:calculate:true', 'model:2:true', 'tool:write_state:true', 'model:3:true']);
  assert.deepEqual(folded.state, { findings: '391' });
  assert.equal(folded.lastOutcome, 'success');

  // A late joiner folds the catch-up snapshot to the same conversation.
  const late = record(new AiStreamClient({ baseUrl: GATEWAY_URL }), sid);
  t.after(() => late.connection.close());
  await late.connection.ready;
  await eventually('the snapshot', () => late.events.some((e) => e.type === 'STATE_SNAPSHOT'));
  const caughtUp = new Conversation();
  for (const e of late.events) caughtUp.apply(e);
  assert.deepEqual(view(caughtUp).filter((m) => m.content || m.tools.length), shown.filter((m) => m.content || m.tools.length));
  assert.deepEqual(caughtUp.state, folded.state);
});

test('the client and the web app type-check (tsc --noEmit, strict)', { timeout: 60_000 }, async () => {
  const { stdout, stderr } = await promisify(execFile)('npm', ['run', 'check', '--silent'], { cwd: CLIENTS }).catch((e) => e);
  assert.equal(stderr.trim() + stdout.replace(/^>.*$/gm, '').trim(), '');
});

test('reconnection waits grow with full jitter and stay under the cap', () => {
  // Imported lazily: a pure function of the client.
  return import('../../src/clients/typescript/dist/index.js').then(({ backoff }) => {
    const draws = Array.from({ length: 2000 }, () => backoff(6, { initialDelayMs: 250, maxDelayMs: 3000 }));
    assert.ok(Math.max(...draws) < 3000 && Math.min(...draws) >= 0);
    assert.ok(new Set(draws.map((d) => Math.floor(d / 300))).size >= 9, 'spread over the whole range');
    assert.ok(Array.from({ length: 200 }, () => backoff(1, {})).every((d) => d < 250));
    return sleep(0);
  });
});

test('the README\'s TypeScript quick start runs as written against a gateway', { timeout: 30_000 }, async () => {
  const readme = await import('node:fs/promises').then((fs) => fs.readFile(new URL('../../README.md', import.meta.url), 'utf8'));
  const block = readme.split('<!-- ts-quickstart -->')[1]?.match(/```ts\n([\s\S]*?)```/)?.[1];
  assert.ok(block, 'README has the quick start block');
  assert.ok(block.trim().split('\n').filter((l) => l.trim()).length <= 10, 'under ten lines');
  // The package name resolves to the built client; localhost:5000 is this suite's gateway; render records what it gets.
  const code = block
    .replace("from '@aistream/client'", `from ${JSON.stringify(new URL('../../src/clients/typescript/dist/index.js', import.meta.url).href)}`)
    .replace("'http://localhost:5000'", JSON.stringify(GATEWAY_URL))
    .replace("client.join('demo'", `client.join(${JSON.stringify(sessionId('readme'))}`);
  const rendered = [];
  globalThis.render = (messages) => rendered.push(messages.map((m) => `${m.role}: ${m.content}`));
  const module = `${code}\nexport { session, conversation };`;
  const { session, conversation } = await import(`data:text/javascript,${encodeURIComponent(module)}`);
  try {
    await eventually('the answer', () => conversation.lastOutcome === 'success', 15_000);
    assert.equal(conversation.visibleMessages()[0].content, 'Tell me about streaming');
    assert.ok(rendered.length > 10, 'render was called as the answer streamed');
  } finally {
    session.close();
    delete globalThis.render;
  }
});

test('a gateway without Redis restarts and forgets the session: the resuming client takes the new log from position 0 and misses nothing after it', { timeout: 60_000 }, async (t) => {
  const gateway = await startGateway();
  t.after(() => gateway.kill());
  const sid = sessionId('client-reset');
  for (const transport of ['sse', 'signalr']) {
    const watch = record(new AiStreamClient({ baseUrl: gateway.url, transport, clientId: `w-${transport}`, maxDelayMs: 500 }), `${sid}-${transport}`);
    t.after(() => watch.connection.close());
    await watch.connection.ready;
    await watch.connection.publish(Array.from({ length: 5 }, (_, i) => ({ type: 'CUSTOM', name: 'before', value: i })));
    await eventually('the first five', () => watch.events.filter((e) => e.name === 'before').length === 5);
    await gateway.kill();
    await gateway.start();
    await eventually('live again', () => watch.connection.state.status === 'live', 10_000);
    await eventually('the fresh catch-up', () => watch.events.some((e) => e.type === 'MESSAGES_SNAPSHOT' && e.seq === 0));
    const seqs = await watch.connection.publish([{ type: 'CUSTOM', name: 'after', value: 1 }]);
    await eventually('the event published after the restart', () => watch.events.some((e) => e.name === 'after'), 5000);
    assert.equal(watch.events.find((e) => e.name === 'after').seq, seqs[0]);
    await eventually('its own join in the new log', () => watch.connection.presence.members.has(`w-${transport}`));
  }
});

test('reconnection never loops: a token valid for 30 days is not renewed at once, and a server that closes every stream at once is backed off', { timeout: 30_000 }, async (t) => {
  const key = signingKey();
  const gateway = await startGateway({ AiStream__Auth__Jwt__SigningKey: key });
  t.after(() => gateway.kill());
  const long = record(new AiStreamClient({ baseUrl: gateway.url, transport: 'sse', accessToken: () => jwt(key, 'ann', { lifetimeSeconds: 30 * 24 * 3600 }) }), sessionId('client-long'));
  t.after(() => long.connection.close());
  await long.connection.ready;
  await sleep(1500);
  assert.deepEqual(long.states, ['live']);

  // A server that answers every watch with an empty event stream (a draining node, a misbehaving proxy).
  let opened = 0;
  const server = createServer((req, res) => {
    opened++;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const flapping = record(new AiStreamClient({ baseUrl: `http://127.0.0.1:${server.address().port}`, transport: 'sse', maxDelayMs: 1000 }), 'x');
  await sleep(3000);
  flapping.connection.close();
  assert.ok(opened >= 3 && opened <= 15, `${opened} connections in 3 s`);
  assert.ok(flapping.states.some((s) => s.startsWith('reconnecting:4')), flapping.states.join(','));
});

test('a JSON Patch reaching for __proto__, constructor or prototype does not apply', async () => {
  const { applyPatch } = await import('../../src/clients/typescript/dist/index.js');
  const state = { a: 1 };
  for (const path of ['/__proto__/isAdmin', '/constructor/prototype/x', '/a/__proto__']) {
    const after = applyPatch(state, [{ op: 'add', path, value: true }]);
    assert.equal(after, state, path);
    assert.equal({}.isAdmin, undefined);
  }
  assert.deepEqual(applyPatch(state, [{ op: 'add', path: '/b', value: 2 }]), { a: 1, b: 2 });
});

test('jwtClaims reads a token\'s payload as UTF-8 (names like "Zoë"), and undefined for an API key', async () => {
  const { jwtClaims, jwtExpiry } = await import('../../src/clients/typescript/dist/index.js');
  const token = jwt(signingKey(), 'zoe', { name: 'Zoë Ünal', lifetimeSeconds: 60 });
  assert.equal(jwtClaims(token).name, 'Zoë Ünal');
  assert.ok(Math.abs(jwtExpiry(token) - (Date.now() + 60_000)) < 2000);
  assert.equal(jwtClaims('sk-an-api-key'), undefined);
});
