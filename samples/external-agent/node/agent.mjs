#!/usr/bin/env node
// An agent that runs outside the gateway and publishes its whole trace to a session, so everyone watching sees its
// steps like a hosted agent's. Node 20+, no dependencies: only the global fetch.
//
//   AISTREAM_URL=http://localhost:5000 AISTREAM_SESSION=demo node agent.mjs "What is 17 * 23?"
//
// Environment: AISTREAM_URL (default http://localhost:5000), AISTREAM_SESSION (default demo), AISTREAM_TOKEN (a JWT
// or API key, sent as Authorization: Bearer), AISTREAM_RUN_ID (default a new id; reuse one to replay a run: the
// gateway answers the repeated publishes from their Idempotency-Key and logs nothing twice), AISTREAM_DELAY_MS
// (pause between streamed pieces, default 50).
const base = (process.env.AISTREAM_URL ?? 'http://localhost:5000').replace(/\/$/, '');
const session = process.env.AISTREAM_SESSION ?? 'demo';
const token = process.env.AISTREAM_TOKEN;
const runId = process.env.AISTREAM_RUN_ID ?? `ext-${crypto.randomUUID().slice(0, 12)}`;
const delayMs = Number(process.env.AISTREAM_DELAY_MS ?? 50);
const question = process.argv[2] ?? 'What is 17 * 23?';
const MAX_ATTEMPTS = 6;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let index = 0; // the event's place in this run: with the run id, its Idempotency-Key

/** Publishes one AG-UI event; retries what may succeed later with the same key, so a retry never logs it twice. */
async function publish(event) {
  const key = `${runId}:${index++}`;
  for (let attempt = 1; ; attempt++) {
    let response;
    try {
      response = await fetch(`${base}/api/sessions/${encodeURIComponent(session)}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key, ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(event),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      if (attempt >= MAX_ATTEMPTS) throw new Error(`could not reach ${base}: ${error.message}`);
      await sleep(backoff(attempt));
      continue;
    }
    if (response.status === 201 || response.status === 200) {
      const { seqs, replayed } = await response.json();
      console.log(`${event.type} -> seq ${seqs[0]}${replayed ? ' (replayed)' : ''}`);
      return seqs[0];
    }
    const problem = await response.json().catch(() => ({}));
    const retryable = response.status === 429 || response.status >= 500;
    if (!retryable || attempt >= MAX_ATTEMPTS) {
      const error = new Error(`${response.status} ${problem.error?.code ?? ''}: ${problem.detail ?? problem.title ?? response.statusText}`);
      error.status = response.status;
      throw error;
    }
    const retryAfter = Number(response.headers.get('retry-after'));
    await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : backoff(attempt));
  }
}

/** Exponential backoff with full jitter: up to 200 ms, 400 ms, 800 ms, … */
const backoff = (attempt) => Math.random() * 200 * 2 ** (attempt - 1);

/** The tool: arithmetic on two numbers found in the question. */
function calculate(expression) {
  const match = /(-?\d+(?:\.\d+)?)\s*([-+*/])\s*(-?\d+(?:\.\d+)?)/.exec(expression);
  if (!match) throw new Error(`no arithmetic in "${expression}"`);
  const [a, op, b] = [Number(match[1]), match[2], Number(match[3])];
  const value = op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b;
  return { expression: `${match[1]} ${op} ${match[3]}`, result: String(value) };
}

async function run() {
  const messageId = `${runId}-m1`;
  const callId = `${runId}-call1`;
  await publish({ type: 'RUN_STARTED', threadId: session, runId });

  // Step 1, the model's turn: it decides to call a tool and streams the arguments.
  await publish({ type: 'STEP_STARTED', stepName: 'model:1' });
  const { expression, result } = calculate(question);
  const args = JSON.stringify({ expression });
  await publish({ type: 'TOOL_CALL_START', toolCallId: callId, toolCallName: 'calculate', parentMessageId: messageId });
  for (let i = 0; i < args.length; i += 8) {
    await publish({ type: 'TOOL_CALL_ARGS', toolCallId: callId, delta: args.slice(i, i + 8) });
    await sleep(delayMs);
  }
  await publish({ type: 'TOOL_CALL_END', toolCallId: callId });
  await publish({ type: 'STEP_FINISHED', stepName: 'model:1' });

  // Step 2, the tool: its result, and a note in the session's shared state.
  await publish({ type: 'STEP_STARTED', stepName: 'tool:calculate' });
  await publish({ type: 'TOOL_CALL_RESULT', messageId: `${runId}-r1`, toolCallId: callId, content: result, role: 'tool' });
  await publish({ type: 'STEP_FINISHED', stepName: 'tool:calculate' });
  await publish({ type: 'STATE_DELTA', delta: [{ op: 'add', path: '/lastAnswer', value: result }] });

  // Step 3, the answer, word by word.
  await publish({ type: 'STEP_STARTED', stepName: 'model:2' });
  await publish({ type: 'TEXT_MESSAGE_START', messageId, role: 'assistant' });
  const words = `${expression} is ${result}.`.split(' ');
  for (let i = 0; i < words.length; i++) {
    await publish({ type: 'TEXT_MESSAGE_CONTENT', messageId, delta: (i === 0 ? '' : ' ') + words[i] });
    await sleep(delayMs);
  }
  await publish({ type: 'TEXT_MESSAGE_END', messageId });
  await publish({ type: 'STEP_FINISHED', stepName: 'model:2' });
  await publish({ type: 'RUN_FINISHED', threadId: session, runId, outcome: { type: 'success' } });
}

try {
  await run();
} catch (error) {
  console.error(`agent: ${error.message}`);
  // Say so in the session, unless the gateway refused us outright (then it would refuse this too).
  if (error.status !== 401 && error.status !== 403) {
    await publish({ type: 'RUN_ERROR', runId, message: error.message, code: 'agent_failed' }).catch(() => {});
  }
  process.exitCode = 1;
}
