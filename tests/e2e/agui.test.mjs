// POST /agui with the official @ag-ui/client HttpAgent, unmodified, and with a plain fetch; an SSE watcher of the
// same session (threadId) sees the same run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpAgent } from '@ag-ui/client';
import { EventSchema } from '@ag-ui/core/schemas';
import {
  GATEWAY_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  Watcher,
  assertContiguous,
  assertRunShape,
  isPresence,
  readSse,
  runSlice,
  sessionEventsUrl,
  sessionId,
} from './lib.mjs';

/** Runs `fn` with console.warn captured, so the client's per-event "[ag-ui][enforce]" notices are counted, not printed. */
async function capturingWarnings(fn) {
  const warnings = [];
  const original = console.warn;
  console.warn = (...args) => warnings.push(args.map(String).join(' '));
  try {
    return { value: await fn(), warnings };
  } catch (error) {
    error.warnings = warnings;
    throw error;
  } finally {
    console.warn = original;
  }
}

test('@ag-ui/client HttpAgent runs against /agui unmodified; a session watcher sees the same run', { timeout: TEST_TIMEOUT_MS}, async (t) => {
  const sid = sessionId('agui-agent');
  const watcher = new Watcher(sessionEventsUrl(sid));
  t.after(() => watcher.close());
  await watcher.opened();

  const agent = new HttpAgent({ url: `${GATEWAY_URL}/agui`, threadId: sid });
  agent.messages = [{ id: 'm1', role: 'user', content: 'hello' }];
  const seen = [];
  const texts = [];
  const subscriber = {
    onEvent: ({ event }) => void seen.push(event),
    onTextMessageContentEvent: ({ event }) => void texts.push(event.delta),
  };
  // Rejects when the client's verification of the stream fails; node:test's timeout catches a run that never ends.
  const { value: result, warnings } = await capturingWarnings(() => agent.runAgent({ runId: 'r1' }, subscriber));

  // The events as the client verified and applied them.
  assert.ok(seen.length >= 5, `saw ${seen.length} events`);
  assert.equal(seen[0].type, 'RUN_STARTED');
  assert.equal(seen[0].runId, 'r1');
  assert.equal(seen[0].threadId, sid);
  assert.equal(seen.at(-1).type, 'RUN_FINISHED');
  assert.equal(seen.at(-1).runId, 'r1');
  assert.equal(seen.filter((e) => e.type === 'RUN_STARTED' || e.type === 'RUN_FINISHED').length, 2, 'one run, nothing of other runs');
  const agentText = assertRunShape(seen, 'r1', sid);
  assert.equal(texts.join(''), agentText);

  // The agent's conversation now holds the question and the streamed answer.
  assert.equal(agent.isRunning, false);
  assert.deepEqual(agent.messages[0], { id: 'm1', role: 'user', content: 'hello' });
  const assistant = agent.messages.filter((m) => m.role === 'assistant');
  assert.equal(assistant.length, 1);
  assert.equal(assistant[0].content, agentText);
  assert.ok(assistant[0].content.trim().length > 0);
  assert.deepEqual(result.newMessages.map((m) => m.role), ['assistant']);

  // Watchers of the session (threadId) see the same run: same runId, same text, and the user message m1 before it.
  await watcher.runEnded('r1');
  const watched = runSlice(watcher.events, 'r1');
  assert.equal(assertRunShape(watched, 'r1', sid), agentText);
  assertContiguous(watched.map((e) => e.seq), 'the watched run');
  const userStart = watcher.events.find((e) => e.type === 'TEXT_MESSAGE_START' && e.messageId === 'm1');
  assert.equal(userStart?.role, 'user');
  assert.ok(userStart.seq < watched[0].seq);

  // /agui speaks strict AG-UI: the client's enforcement finds nothing to strip (positions ride on the SSE id: line).
  assert.deepEqual(warnings.filter((w) => /ag-ui/.test(w)), [], 'no AG-UI conformance notices from the client');
  t.diagnostic(`${seen.length} events`);
});

test('POST /agui streams exactly the run, RUN_STARTED to RUN_FINISHED, in the AG-UI SSE encoding, as watchers see it', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const sid = sessionId('agui-wire');
  const watcher = new Watcher(sessionEventsUrl(sid));
  t.after(() => watcher.close());
  await watcher.opened();

  const input = {
    threadId: sid,
    runId: 'wire-1',
    messages: [{ id: 'u1', role: 'user', content: 'hello over the wire' }],
    tools: [],
    context: [],
    state: {},
    forwardedProps: {},
  };
  const response = await fetch(`${GATEWAY_URL}/agui`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(input),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  // The body ends by itself after RUN_FINISHED.
  const frames = await readSse(response.body);
  const dataFrames = frames.filter((f) => f.data !== undefined);
  const events = dataFrames.map((f) => JSON.parse(f.data));
  assert.equal(events[0].type, 'RUN_STARTED', 'RUN_STARTED is the first thing streamed');
  assert.equal(events.at(-1).type, 'RUN_FINISHED', 'RUN_FINISHED is the last thing streamed');
  const text = assertRunShape(events, 'wire-1', sid);
  for (const f of dataFrames) {
    assert.deepEqual(f.other, undefined, 'no event: line (AG-UI SSE is data-only)');
  }

  await watcher.runEnded('wire-1');
  const watched = runSlice(watcher.events, 'wire-1');
  // Same events as the session log has them; the position is on the id: line instead of a seq field.
  // (The log also has the run's presence as an agent member; /agui streams only the run's own events.)
  const runEvents = watched.filter((e) => !isPresence(e));
  assert.deepEqual(events, runEvents.map(({ seq, ...rest }) => rest), 'the /agui stream is the run as the session log has it');
  assert.deepEqual(dataFrames.map((f) => Number(f.id)), runEvents.map((e) => e.seq), 'same positions');
  assert.equal(assertRunShape(watched, 'wire-1', sid), text);

  // A second run on the same thread resends the history (as AG-UI clients do): m1 is not logged twice.
  const again = await fetch(`${GATEWAY_URL}/agui`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ ...input, runId: 'wire-2' }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(again.status, 200);
  const second = (await readSse(again.body)).filter((f) => f.data !== undefined).map((f) => JSON.parse(f.data));
  assertRunShape(second, 'wire-2', sid);
  await watcher.runEnded('wire-2');
  assert.equal(watcher.events.filter((e) => e.type === 'TEXT_MESSAGE_START' && e.messageId === 'u1').length, 1);
  t.diagnostic(`${events.length} events, ${text.length} characters`);
});

test('every event of an /agui run validates against the @ag-ui/core 1.0.0 event schema', { timeout: TEST_TIMEOUT_MS}, async () => {
  const sid = sessionId('agui-schema');
  const response = await fetch(`${GATEWAY_URL}/agui`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ threadId: sid, runId: 'schema-1', messages: [{ id: 'u1', role: 'user', content: 'hi' }], tools: [], context: [], state: {}, forwardedProps: {} }),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(response.status, 200);
  const events = (await readSse(response.body)).filter((f) => f.data !== undefined).map((f) => JSON.parse(f.data));
  assert.ok(events.length >= 5);
  for (const e of events) {
    const parsed = EventSchema.safeParse(e);
    assert.ok(parsed.success, `${e.type} (seq ${e.seq}) is not an AG-UI 1.0 event: ${parsed.error?.message}`);
  }
  assert.equal(events.at(-1).type, 'RUN_FINISHED');
  assert.deepEqual(events.at(-1).outcome, { type: 'success' });
});

test('@ag-ui/client HttpAgent runs the researcher agent: the client verifies and applies the whole step trace', { timeout: TEST_TIMEOUT_MS }, async () => {
  const sid = sessionId('agui-researcher');
  const agent = new HttpAgent({ url: `${GATEWAY_URL}/agui`, threadId: sid });
  agent.messages = [{ id: 'q1', role: 'user', content: 'What is 17 * 23? Write the answer to the findings.' }];
  const seen = [];
  const steps = [];
  const args = [];
  const subscriber = {
    onEvent: ({ event }) => void seen.push(event),
    onStepStartedEvent: ({ event }) => void steps.push(event.stepName),
    onToolCallArgsEvent: ({ event }) => void args.push(event.delta),
  };
  // The agent's fields travel in forwardedProps; the client checks every event against its schema and the sequence rules.
  const { warnings } = await capturingWarnings(() => agent.runAgent({ runId: 'research-1', forwardedProps: { agent: 'researcher' } }, subscriber));

  assert.deepEqual(steps, ['model:1', 'tool:calculate', 'model:2', 'tool:write_state', 'model:3']);
  assert.equal(seen.at(-1).type, 'RUN_FINISHED');
  assert.ok(seen.some((e) => e.type === 'REASONING_MESSAGE_CONTENT'), 'the reasoning streams');
  assert.ok(args.length > 2, 'tool arguments stream in pieces');
  assert.equal(seen.find((e) => e.type === 'TOOL_CALL_RESULT').content, '391');
  // The client applied the state write and holds the conversation: tool calls, their results, the answer.
  assert.deepEqual(agent.state, { findings: '391' });
  const toolMessages = agent.messages.filter((m) => m.role === 'tool').map((m) => m.content);
  assert.deepEqual(toolMessages, ['391', 'Set /findings to "391".']);
  const calls = agent.messages.filter((m) => m.role === 'assistant' && m.toolCalls?.length).flatMap((m) => m.toolCalls.map((c) => c.function.name));
  assert.deepEqual(calls, ['calculate', 'write_state']);
  assert.match(agent.messages.at(-1).content, /calculate gave 391/);
  assert.deepEqual(warnings.filter((w) => /ag-ui/.test(w)), [], 'no AG-UI conformance notices from the client');
});

test('@ag-ui/client HttpAgent: a failing tool is a result the client accepts as is, and the run goes on', { timeout: TEST_TIMEOUT_MS }, async () => {
  const agent = new HttpAgent({ url: `${GATEWAY_URL}/agui`, threadId: sessionId('agui-tool-error') });
  agent.messages = [{ id: 'q1', role: 'user', content: 'What is 5 / 0?' }];
  const { warnings } = await capturingWarnings(() => agent.runAgent({ runId: 'research-err', forwardedProps: { agent: 'researcher' } }));

  const result = agent.messages.find((m) => m.role === 'tool');
  assert.match(result.content, /^Error: .*divides by zero/);
  assert.match(agent.messages.at(-1).content, /divides by zero/);
  assert.deepEqual(warnings.filter((w) => /ag-ui/.test(w)), [], 'no AG-UI conformance notices from the client');
});
