// The Vercel AI SDK (the official `ai` package, 7.x) against the gateway's chat backend: its Chat class (what useChat
// wraps) with DefaultChatTransport sends, resumes after a reload, follows a run from a second tab and stops it; the
// tool parts of a client-tool run and an agent's steps arrive in order; and with authentication on, the endpoints take
// the same JWT and rights as every other transport. Every stream is also checked against a plain SSE watcher of the
// session: one run, seen the same way on every transport.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AbstractChat, DefaultChatTransport, lastAssistantMessageIsCompleteWithToolCalls } from 'ai';
import { Conversation } from '../../src/clients/typescript/dist/index.js';
import { GATEWAY_URL, readSessionLog, readSse, runText, sessionId } from './lib.mjs';
import { eventually, jwt, signingKey, sleep, startGateway, startRedis } from './processes.mjs';

/** useChat's state, outside React: what @ai-sdk/react's Chat keeps, without the re-rendering. */
class NodeChat extends AbstractChat {
  constructor(init) {
    const state = {
      status: 'ready',
      error: undefined,
      messages: [],
      pushMessage(m) { this.messages = [...this.messages, m]; },
      popMessage() { this.messages = this.messages.slice(0, -1); },
      replaceMessage(i, m) {
        this.messages = this.messages.map((old, at) => (at === i ? m : old));
        this.updates.push(structuredClone(m)); // the SDK goes on mutating the message it hands over
      },
      updates: [],
      snapshot: (thing) => structuredClone(thing),
    };
    super({ ...init, state });
    this.updates = state.updates;
  }
}

function chat(url, id, { headers, body, ...init } = {}) {
  const errors = [];
  const finished = [];
  const c = new NodeChat({
    id,
    transport: new DefaultChatTransport({ api: `${url}/api/chat`, headers, body }),
    onError: (e) => errors.push(e),
    onFinish: (f) => finished.push(f),
    ...init,
  });
  return Object.assign(c, { errors, finished });
}

const lastAssistant = (c) => c.messages.findLast((m) => m.role === 'assistant');
const textOf = (message) => (message?.parts ?? []).filter((p) => p.type === 'text').map((p) => p.text).join('');

/** The session's log as a plain SSE watcher reads it (from the start, until `until` holds). */
const watch = readSessionLog;

/** The conversation a late joiner is given: the messages of its catch-up's MESSAGES_SNAPSHOT. */
async function conversationOf(url, sid) {
  const stop = new AbortController();
  const response = await fetch(`${url}/api/sessions/${sid}/events`, { signal: AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]) });
  let messages;
  await readSse(response.body, (frame) => {
    const e = frame.data && !stop.signal.aborted ? JSON.parse(frame.data) : undefined;
    if (e?.type === 'MESSAGES_SNAPSHOT') {
      messages = e.messages;
      stop.abort();
    }
  }).catch((error) => { if (!stop.signal.aborted) throw error; });
  return messages;
}

const runEnded = (runId) => (events) => events.some((e) => (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') && e.runId === runId);

/** The raw chunks of a response: every `data:` payload, `[DONE]` included. */
async function rawChunks(response) {
  const text = await response.text();
  return text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => (f === 'data: [DONE]' ? '[DONE]' : JSON.parse(f.slice(6))));
}

const userMessage = (id, text) => ({ id, role: 'user', parts: [{ type: 'text', text }] });

let slow;
before(async () => { slow = await startGateway({ AiStream__Providers__sim__TokensPerSecond: '30' }); });
after(() => slow?.kill());

test('AI SDK: Chat.sendMessage streams the answer word by word; an SSE watcher of the session sees the same run and text', { timeout: 30_000 }, async () => {
  const sid = sessionId('aisdk-send');
  const c = chat(GATEWAY_URL, sid);
  await c.sendMessage({ text: 'Tell me about streaming.' });
  const seen = c.updates.filter((m) => m.role === 'assistant').map(textOf);

  assert.deepEqual(c.errors, []);
  assert.equal(c.status, 'ready');
  assert.deepEqual(c.messages.map((m) => m.role), ['user', 'assistant']);
  const answer = lastAssistant(c);
  assert.match(answer.id, /^run_/, 'the assistant message is named after the run');
  assert.ok(new Set(seen.filter(Boolean)).size > 5, 'the text grew in many steps, not at once');
  assert.equal(c.finished.length, 1);
  assert.equal(c.finished[0].finishReason, 'stop');

  const events = await watch(GATEWAY_URL, sid, runEnded(answer.id));
  assert.ok(textOf(answer).length > 20);
  assert.equal(textOf(answer), runText(events, answer.id));
  // The user's message went into the log once, under the id useChat gave it.
  const userId = c.messages[0].id;
  assert.equal(events.filter((e) => e.type === 'TEXT_MESSAGE_START' && e.messageId === userId).length, 1);

  // A second turn sends the whole history again: the log adds only the new message.
  await c.sendMessage({ text: 'And then?' });
  const all = await watch(GATEWAY_URL, sid, runEnded(lastAssistant(c).id));
  assert.equal(all.filter((e) => e.type === 'TEXT_MESSAGE_START' && e.role === 'user').length, 2);
  assert.equal(all.filter((e) => e.type === 'RUN_STARTED').length, 2);
});

test('AI SDK wire format: the headers, start first, [DONE] last, 204 when nothing runs, problem+json for bad requests', { timeout: 30_000 }, async () => {
  const sid = sessionId('aisdk-wire');
  const response = await fetch(`${GATEWAY_URL}/api/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: sid, trigger: 'submit-message', messages: [userMessage('u1', 'Hello')] }),
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(response.headers.get('x-vercel-ai-ui-message-stream'), 'v1');
  assert.equal(response.headers.get('x-accel-buffering'), 'no');
  const chunks = await rawChunks(response);
  assert.equal(chunks[0].type, 'start');
  assert.equal(chunks.at(-1), '[DONE]');
  assert.deepEqual(chunks.at(-2), { type: 'finish', finishReason: 'stop' });
  // A plain run is one step (the SDK's unit of a model call).
  const types = chunks.slice(1, -2).map((c) => c.type);
  assert.deepEqual([types[0], types[1], types.at(-2), types.at(-1)], ['start-step', 'text-start', 'text-end', 'finish-step']);
  assert.ok(types.slice(2, -2).every((t) => t === 'text-delta'));
  assert.ok(types.length > 10);

  assert.equal((await fetch(`${GATEWAY_URL}/api/chat/${sid}/stream`)).status, 204, 'the run ended: nothing to resume');
  assert.equal((await fetch(`${GATEWAY_URL}/api/chat/${sid}/stop`, { method: 'POST' })).status, 204, 'nothing to stop');
  for (const [body, param, status] of [
    ['{', undefined],
    [JSON.stringify({ messages: [] }), 'id'],
    [JSON.stringify({ id: 'a/b', messages: [] }), 'id'],
    [JSON.stringify({ id: sid, messages: {} }), 'messages'],
    [JSON.stringify({ id: sid, messages: [{ role: 'robot', parts: [] }] }), 'messages[0]'],
    [JSON.stringify({ id: sid, messages: [], trigger: 'dance' }), 'trigger'],
    [JSON.stringify({ id: sid, messages: [], model: 42 }), 'model'],
    [JSON.stringify({ id: sid, messages: [userMessage('same', 'a'), userMessage('same', 'b')] }), 'messages[1].id'],
    [JSON.stringify({ id: sid, messages: [userMessage('huge', 'x'.repeat(300 * 1024))] }), 'messages[0]', 413],
  ]) {
    const bad = await fetch(`${GATEWAY_URL}/api/chat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(bad.status, status ?? 400, body.slice(0, 200));
    assert.match(bad.headers.get('content-type'), /application\/problem\+json/);
    if (param) assert.equal((await bad.json()).error.param, param, body);
  }
  assert.equal((await fetch(`${GATEWAY_URL}/api/chat/a%2Fb/stream`)).status, 400);
  const unknownModel = await fetch(`${GATEWAY_URL}/api/chat`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: sid, messages: [userMessage('u2', 'Hi')], model: 'nope' }),
  });
  assert.equal(unknownModel.status, 404);
});

test('AI SDK: a reload mid-stream resumes (resumeStream) to the same final text; a second tab follows the same run', { timeout: 60_000 }, async () => {
  const sid = sessionId('aisdk-resume');
  const first = chat(slow.url, sid);
  const sending = first.sendMessage({ text: 'Explain resumable streams.' });
  await eventually('the answer to be streaming', () => textOf(lastAssistant(first)).length > 30);

  // A second tab with the same chat id joins the run in progress.
  const tab = chat(slow.url, sid);
  const following = tab.resumeStream();
  // The first tab reloads: its request is gone, and a new page resumes.
  first.stop();
  await sending;
  const partial = textOf(lastAssistant(first));
  const reloaded = chat(slow.url, sid);
  await reloaded.resumeStream();
  await following;

  const runId = lastAssistant(reloaded).id;
  const events = await watch(slow.url, sid, runEnded(runId));
  const full = runText(events, runId);
  assert.ok(full.length > partial.length, 'the run went on after the first page left');
  assert.ok(full.startsWith(partial));
  assert.equal(textOf(lastAssistant(reloaded)), full, 'the reloaded page has the whole answer, replayed from its start');
  assert.equal(textOf(lastAssistant(tab)), full, 'the second tab has the same answer');
  assert.equal(lastAssistant(tab).id, runId);
  assert.deepEqual([...reloaded.errors, ...tab.errors], []);
  assert.equal(reloaded.finished[0].finishReason, 'stop');
  // Resuming once it ended: nothing to resume, and the chat stays as it is.
  const late = chat(slow.url, sid);
  await late.resumeStream();
  assert.deepEqual(late.messages, []);
  assert.equal(late.status, 'ready');
});

test('AI SDK: POST /api/chat/{id}/stop cancels the run for every viewer; the log ends it as cancelled', { timeout: 60_000 }, async () => {
  const sid = sessionId('aisdk-stop');
  const sender = chat(slow.url, sid);
  const sending = sender.sendMessage({ text: 'Write a long story.' });
  await eventually('the answer to be streaming', () => textOf(lastAssistant(sender)).length > 10);
  const viewer = chat(slow.url, sid);
  const viewing = viewer.resumeStream();
  await eventually('the second tab to follow', () => textOf(lastAssistant(viewer)).length > 10);

  const stop = await fetch(`${slow.url}/api/chat/${sid}/stop`, { method: 'POST' });
  assert.equal(stop.status, 200);
  const stopped = await stop.json();
  assert.deepEqual(stopped.stopped.map((s) => s.outcome), ['cancelled']);
  await Promise.all([sending, viewing]);

  const runId = stopped.stopped[0].runId;
  const events = await watch(slow.url, sid, runEnded(runId));
  const end = events.find((e) => e.type === 'RUN_FINISHED' && e.runId === runId);
  assert.equal(end.outcome.type, 'cancelled');
  for (const c of [sender, viewer]) {
    assert.equal(c.status, 'ready');
    assert.deepEqual(c.errors, []);
    assert.equal(textOf(lastAssistant(c)), runText(events, runId), 'each viewer has the text up to the stop, and nothing after');
  }
  // The streams ended with abort, not finish.
  const replayCheck = await fetch(`${slow.url}/api/chat/${sid}/stream`);
  assert.equal(replayCheck.status, 204);
});

test('AI SDK: a run calling the client\'s tool streams the tool parts in order; the tool output sent back is answered', { timeout: 30_000 }, async () => {
  const sid = sessionId('aisdk-tools');
  const tools = [{ name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
  const calls = [];
  const c = chat(GATEWAY_URL, sid, {
    body: { tools },
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
    onToolCall: ({ toolCall }) => {
      calls.push(toolCall);
      // Answered without awaiting, as the SDK's docs advise (awaiting here would deadlock the chat's job queue).
      c.addToolOutput({ tool: toolCall.toolName, toolCallId: toolCall.toolCallId, output: 'Sunny, 24 degrees' });
    },
  });
  await c.sendMessage({ text: 'What is the weather in Paris? Use get_weather.' });
  await eventually('the tool output to be answered', () => c.status === 'ready' && c.finished.length === 2 && c.finished[1].finishReason === 'stop');

  assert.deepEqual(c.errors, []);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].toolName, 'get_weather');
  const message = lastAssistant(c);
  const toolPart = message.parts.find((p) => p.type === 'tool-get_weather');
  assert.equal(toolPart.state, 'output-available');
  assert.equal(toolPart.output, 'Sunny, 24 degrees');
  assert.equal(typeof toolPart.input, 'object', 'the streamed arguments were parsed into the input');
  assert.match(textOf(message), /Sunny, 24 degrees/, 'the model answered with the tool\'s output');
  assert.equal(c.finished[0].finishReason, 'tool-calls', 'the first run ended waiting for the tool');

  // On the wire: start, then the call's input streaming in, then available, then the finish waiting for it.
  const raw = await fetch(`${GATEWAY_URL}/api/chat`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: sessionId('aisdk-tools-raw'), messages: [userMessage('q', 'What is the weather in Oslo? Use get_weather.')], tools }),
  });
  const types = (await rawChunks(raw)).map((x) => x.type ?? x).filter((t) => !t.startsWith('reasoning'));
  const collapsed = types.filter((t, i) => t !== types[i - 1]);
  assert.deepEqual(collapsed, ['start', 'start-step', 'tool-input-start', 'tool-input-delta', 'tool-input-available', 'finish-step', 'finish', '[DONE]']);

  // The log holds the client's result once, even though every later request carries it again.
  await c.sendMessage({ text: 'Thanks!' });
  const events = await watch(GATEWAY_URL, sid, runEnded(lastAssistant(c).id));
  assert.equal(events.filter((e) => e.type === 'TOOL_CALL_RESULT').length, 1);
});

test('AI SDK: an agent run\'s steps arrive as start-step/finish-step with their tool parts, reasoning and state', { timeout: 30_000 }, async () => {
  const sid = sessionId('aisdk-agent');
  const transport = new DefaultChatTransport({ api: `${GATEWAY_URL}/api/chat`, body: { agent: 'researcher' } });
  const stream = await transport.sendMessages({
    chatId: sid,
    trigger: 'submit-message',
    messageId: undefined,
    messages: [userMessage('q1', 'What is 17 * 23? Write the answer to the findings.')],
    abortSignal: undefined,
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);

  // The SDK parsed and validated every chunk. Steps: model, tool, model, tool, model.
  assert.equal(chunks.filter((c) => c.type === 'start-step').length, 5);
  assert.equal(chunks.filter((c) => c.type === 'finish-step').length, 5);
  const outline = chunks.map((c) => c.type).filter((t) => /step|tool-input-start|tool-input-available|tool-output|^finish$|^start$/.test(t));
  assert.deepEqual(outline, [
    'start',
    'start-step', 'tool-input-start', 'tool-input-available', 'finish-step',
    'start-step', 'tool-output-available', 'finish-step',
    'start-step', 'tool-input-start', 'tool-input-available', 'finish-step',
    'start-step', 'tool-output-available', 'finish-step',
    'start-step', 'finish-step',
    'finish',
  ]);
  const inputs = chunks.filter((c) => c.type === 'tool-input-available');
  assert.deepEqual(inputs.map((c) => c.toolName), ['calculate', 'write_state']);
  assert.deepEqual(inputs[0].input, { expression: '17 * 23' });
  assert.equal(chunks.find((c) => c.type === 'tool-output-available').output, '391');
  assert.ok(chunks.some((c) => c.type === 'reasoning-delta'), 'the reasoning streams');
  assert.ok(chunks.filter((c) => c.type === 'tool-input-delta').length > 2, 'the arguments stream in pieces');
  assert.ok(chunks.some((c) => c.type.startsWith('data-state')), 'the state change is a data part');
  assert.match(chunks.filter((c) => c.type === 'text-delta').map((c) => c.delta).join(''), /calculate gave 391/);
});

test('AI SDK: regenerate answers the question again, and the old answer leaves the conversation for everyone', { timeout: 30_000 }, async () => {
  const sid = sessionId('aisdk-regenerate');
  const c = chat(GATEWAY_URL, sid);
  await c.sendMessage({ text: 'Name a colour.' });
  const firstRun = lastAssistant(c).id;
  const firstText = textOf(lastAssistant(c));
  await c.regenerate();
  assert.deepEqual(c.errors, []);
  assert.deepEqual(c.messages.map((m) => m.role), ['user', 'assistant']);
  assert.notEqual(lastAssistant(c).id, firstRun);
  const events = await watch(GATEWAY_URL, sid, runEnded(lastAssistant(c).id));
  const secondText = runText(events, lastAssistant(c).id);
  assert.equal(textOf(lastAssistant(c)), secondText);
  assert.equal(events.filter((e) => e.type === 'TEXT_MESSAGE_START' && e.role === 'user').length, 1, 'the question was not asked twice');
  assert.equal(runText(events, firstRun), firstText, 'the log keeps the old answer');
  const superseded = events.filter((e) => e.type === 'CUSTOM' && e.name === 'conversation.superseded');
  assert.equal(superseded.length, 1);

  // Everyone's view of the conversation: the question and the new answer only. A late joiner's snapshot says so,
  // and so does the TypeScript client's fold of the whole log.
  assert.deepEqual((await conversationOf(GATEWAY_URL, sid)).map((m) => [m.role, m.content]), [['user', 'Name a colour.'], ['assistant', secondText]]);
  const folded = new Conversation();
  for (const e of events) folded.apply(e);
  assert.deepEqual(folded.visibleMessages().map((m) => [m.role, m.content]), [['user', 'Name a colour.'], ['assistant', secondText]]);

  // A second round: regenerate takes out only the answer to the question it repeats.
  await c.sendMessage({ text: 'Another colour?' });
  await c.regenerate();
  const after = await watch(GATEWAY_URL, sid, runEnded(lastAssistant(c).id));
  const last = after.filter((e) => e.type === 'CUSTOM' && e.name === 'conversation.superseded').at(-1);
  assert.equal(last.value.messageIds.length, 1, 'only the answer to the last question left the conversation');

  // Regenerating the first answer (the SDK sends the history up to it) takes out that answer, nothing said after it.
  const firstQuestion = c.messages[0].id;
  const raw = await fetch(`${GATEWAY_URL}/api/chat`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: sid, trigger: 'regenerate-message', messages: [userMessage(firstQuestion, 'Name a colour.')] }),
  });
  const rerun = (await rawChunks(raw))[0].messageId;
  const final = await watch(GATEWAY_URL, sid, runEnded(rerun));
  const roles = (await conversationOf(GATEWAY_URL, sid)).map((m) => [m.role, m.role === 'user' ? m.content : undefined]);
  assert.deepEqual(roles, [['user', 'Name a colour.'], ['user', 'Another colour?'], ['assistant', undefined], ['assistant', undefined]],
    'the first answer left; the second question and its answer stayed; the new answer came last');
  assert.equal(final.filter((e) => e.type === 'CUSTOM' && e.name === 'conversation.superseded').at(-1).value.messageIds.length, 1);
});

test('AI SDK with Redis: a chat sent on one node resumes on another mid-stream, to the same text', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const env = { ConnectionStrings__Redis: redis.connectionString, AiStream__Providers__sim__TokensPerSecond: '30' };
  const [a, b] = [await startGateway(env), await startGateway(env)];
  t.after(() => { a.kill(); b.kill(); });
  const sid = sessionId('aisdk-redis');
  const onA = chat(a.url, sid);
  const sending = onA.sendMessage({ text: 'Tell me about scale-out.' });
  await eventually('the answer to be streaming on A', () => textOf(lastAssistant(onA)).length > 20);
  const onB = chat(b.url, sid);
  await onB.resumeStream();
  await sending;
  assert.deepEqual([...onA.errors, ...onB.errors], []);
  assert.ok(textOf(lastAssistant(onB)).length > 40);
  assert.equal(textOf(lastAssistant(onB)), textOf(lastAssistant(onA)));
  assert.equal(lastAssistant(onB).id, lastAssistant(onA).id);
});

test('AI SDK: while the model thinks, keep-alive comments hold the stream open; the SDK reads through them', { timeout: 30_000 }, async (t) => {
  const gateway = await startGateway({ AiStream__Transports__SseHeartbeatSeconds: '0.3', AiStream__Providers__sim__TimeToFirstTokenMs: '1500' });
  t.after(() => gateway.kill());
  const sid = sessionId('aisdk-keepalive');
  const response = await fetch(`${gateway.url}/api/chat`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: sid, messages: [userMessage('k1', 'Hi')] }),
  });
  const text = await response.text();
  const beforeFirstText = text.slice(0, text.indexOf('"text-delta"'));
  assert.ok((beforeFirstText.match(/^: heartbeat$/gm) ?? []).length >= 2, `comments before the first token:\n${beforeFirstText}`);
  // And the SDK's own chat, against the same slow start, ends with the whole answer.
  const c = chat(gateway.url, sessionId('aisdk-keepalive-chat'));
  await c.sendMessage({ text: 'Hi' });
  assert.deepEqual(c.errors, []);
  assert.ok(textOf(lastAssistant(c)).length > 20);
});

test('AI SDK: a gateway stopping mid-answer ends the stream with an error the chat shows, not a user\'s stop', { timeout: 60_000 }, async (t) => {
  const gateway = await startGateway({ AiStream__Providers__sim__TokensPerSecond: '20' });
  t.after(() => gateway.kill());
  const c = chat(gateway.url, sessionId('aisdk-shutdown'));
  const sending = c.sendMessage({ text: 'Tell me a long story.' });
  await eventually('the answer to be streaming', () => textOf(lastAssistant(c)).length > 10);
  gateway.process.kill('SIGTERM');
  await sending;
  assert.equal(c.status, 'error');
  assert.match(c.errors[0]?.message ?? '', /shutdown|shutting down/);
  assert.equal(c.finished[0].isError, true);
});

test('AI SDK with authentication: the same JWT and per-session rights as every transport', { timeout: 60_000 }, async (t) => {
  const key = signingKey();
  const gateway = await startGateway({ AiStream__Auth__Jwt__SigningKey: key });
  t.after(() => gateway.kill());
  const sid = sessionId('aisdk-auth');
  const writer = jwt(key, 'ada', { sessions: { [sid]: ['read', 'write'] } });
  const reader = jwt(key, 'bob', { sessions: { [sid]: ['read'] } });
  const other = jwt(key, 'eve', { sessions: { 'someone-else': ['read', 'write'] } });
  const otherWriter = jwt(key, 'cat', { sessions: { [sid]: ['read', 'write'] } });
  const post = (token, path = '/api/chat', body = { id: sid, messages: [userMessage(`u-${Math.random()}`, 'Hi')] }) => fetch(`${gateway.url}${path}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body),
  });

  assert.equal((await post(undefined)).status, 401);
  assert.equal((await post(reader)).status, 403, 'reading is not starting runs');
  assert.equal((await post(other)).status, 403, 'a token for another session');
  assert.equal((await fetch(`${gateway.url}/api/chat/${sid}/stream`)).status, 401);
  assert.equal((await fetch(`${gateway.url}/api/chat/${sid}/stream`, { headers: { authorization: `Bearer ${other}` } })).status, 403);

  const c = chat(gateway.url, sid, { headers: { authorization: `Bearer ${writer}` } });
  const sending = c.sendMessage({ text: 'Hello with a token.' });
  await eventually('the answer to be streaming', () => textOf(lastAssistant(c)).length > 5);
  // A reader may follow the run, but not stop it; neither may another writer stop Ada's run.
  const follower = chat(gateway.url, sid, { headers: { authorization: `Bearer ${reader}` } });
  const following = follower.resumeStream();
  assert.equal((await post(reader, `/api/chat/${sid}/stop`, {})).status, 403);
  assert.equal((await post(otherWriter, `/api/chat/${sid}/stop`, {})).status, 403);
  // Nobody regenerates an answer still being written.
  const early = await post(otherWriter, '/api/chat', { id: sid, trigger: 'regenerate-message', messages: [] });
  assert.equal(early.status, 409);
  assert.equal((await early.json()).error.code, 'run_in_progress');
  // Cat starts a run of its own beside Ada's: Cat's stop ends Cat's run only.
  const cats = chat(gateway.url, sid, { headers: { authorization: `Bearer ${otherWriter}` } });
  const catSending = cats.sendMessage({ text: 'Cat asks too.' });
  await eventually('Cat\'s answer to be streaming', () => textOf(lastAssistant(cats)).length > 0);
  const catStop = await post(otherWriter, `/api/chat/${sid}/stop`, {});
  assert.equal(catStop.status, 200);
  assert.deepEqual((await catStop.json()).stopped, [{ runId: lastAssistant(cats).id, outcome: 'cancelled' }]);
  await Promise.all([sending, following, catSending]);
  assert.deepEqual([...c.errors, ...follower.errors], []);
  assert.equal(c.finished[0].finishReason, 'stop');
  assert.equal(textOf(lastAssistant(follower)), textOf(lastAssistant(c)));

  // A writer regenerates the latest answer (Cat's question is the latest), not an earlier one: that is an admin's.
  const adaFirst = c.messages[0];
  const catQuestion = cats.messages[0];
  const older = await post(writer, '/api/chat', { id: sid, trigger: 'regenerate-message', messages: [userMessage(adaFirst.id, 'Hello with a token.')] });
  assert.equal(older.status, 409);
  assert.equal((await older.json()).error.code, 'not_latest_question');
  const latest = await post(writer, '/api/chat', { id: sid, trigger: 'regenerate-message', messages: [userMessage(catQuestion.id, 'Cat asks too.')] });
  assert.equal(latest.status, 200);
  assert.equal((await rawChunks(latest)).at(-2).type, 'finish');

  const unauthorized = chat(gateway.url, sid);
  await unauthorized.sendMessage({ text: 'No token.' });
  assert.equal(unauthorized.status, 'error');
  assert.equal(unauthorized.errors.length, 1);
  await sleep(0);
});
