import type { JsonPatchOperation, SessionEvent, SnapshotMessage } from './events.js';

export interface ToolCall {
  id: string;
  name: string;
  /** The arguments as the model streamed them (JSON text, complete once `complete`). */
  args: string;
  complete: boolean;
  result?: string;
  error: boolean;
}

export interface Message {
  id: string;
  /** `user`, `assistant`, `system`, … or `reasoning` for a model's visible thinking. */
  role: string;
  content: string;
  streaming: boolean;
  toolCalls: ToolCall[];
}

/** One line of an agent's trace, in the order things happened. */
export type TraceItem =
  | { kind: 'step'; name: string; finished: boolean; seq: number }
  | { kind: 'reasoning'; messageId: string; seq: number }
  | { kind: 'tool'; toolCallId: string; seq: number }
  | { kind: 'state'; delta: JsonPatchOperation[]; seq: number };

/**
 * A session's conversation as a UI renders it, folded from its events: messages (streaming text appended as it
 * arrives), tool calls with their streamed arguments and results, the current run's trace (steps, reasoning, tool
 * calls, state changes) and the shared state. A late joiner that folds the catch-up snapshot ends with the same
 * messages as a watcher that saw every event.
 */
export class Conversation {
  readonly messages: Message[] = [];
  readonly toolCalls = new Map<string, ToolCall>();
  /** The active (or last) run's trace: its latest `MAX_TRACE` items. */
  readonly trace: TraceItem[] = [];
  /** Grows whenever the trace or the state changed, so a view redraws them only then. */
  revision = 0;
  state: unknown = {};
  activeRunId: string | undefined;
  /** `code: message` of the last run that failed, until the next run starts. */
  lastError: string | undefined;
  /** The last run's outcome: `success`, `cancelled`, `error`. */
  lastOutcome: string | undefined;
  private readonly byId = new Map<string, Message>();

  apply(e: SessionEvent): void {
    const traced = this.trace.length;
    this.fold(e);
    if (e.type !== 'TEXT_MESSAGE_CONTENT') this.revision++;
    if (this.trace.length > MAX_TRACE) this.trace.splice(0, this.trace.length - MAX_TRACE);
    else if (this.trace.length !== traced) this.revision++;
  }

  private fold(e: SessionEvent): void {
    switch (e.type) {
      case 'MESSAGES_SNAPSHOT':
        this.reset(e.messages);
        break;
      case 'STATE_SNAPSHOT':
        this.state = structuredClone(e.snapshot ?? {});
        break;
      case 'STATE_DELTA':
        this.state = applyPatch(this.state, e.delta);
        this.trace.push({ kind: 'state', delta: e.delta, seq: e.seq });
        break;
      case 'RUN_STARTED':
        if (this.activeRunId !== e.runId) this.trace.length = 0;
        this.activeRunId = e.runId;
        this.lastError = undefined;
        this.lastOutcome = undefined;
        break;
      case 'RUN_FINISHED':
      case 'RUN_ERROR':
        this.activeRunId = undefined;
        this.lastError = e.type === 'RUN_ERROR' ? `${e.code ?? 'error'}: ${e.message}` : undefined;
        this.lastOutcome = e.type === 'RUN_ERROR' ? 'error' : e.outcome?.type ?? 'success';
        for (const m of this.messages) m.streaming = false;
        for (const t of this.trace) if (t.kind === 'step') t.finished = true;
        break;
      case 'STEP_STARTED':
        this.trace.push({ kind: 'step', name: e.stepName, finished: false, seq: e.seq });
        break;
      case 'STEP_FINISHED': {
        const step = this.trace.findLast((t) => t.kind === 'step' && !t.finished && t.name === e.stepName);
        if (step?.kind === 'step') step.finished = true;
        break;
      }
      case 'TEXT_MESSAGE_START':
        this.message(e.messageId, e.role ?? 'assistant').streaming = true;
        break;
      case 'TEXT_MESSAGE_CONTENT':
        this.message(e.messageId, 'assistant').content += e.delta;
        break;
      case 'TEXT_MESSAGE_END':
      case 'REASONING_MESSAGE_END':
        this.message(e.messageId, 'assistant').streaming = false;
        break;
      case 'REASONING_MESSAGE_START':
        this.message(e.messageId, 'reasoning').streaming = true;
        this.trace.push({ kind: 'reasoning', messageId: e.messageId, seq: e.seq });
        break;
      case 'REASONING_MESSAGE_CONTENT':
        this.message(e.messageId, 'reasoning').content += e.delta;
        break;
      case 'TOOL_CALL_START': {
        const call: ToolCall = { id: e.toolCallId, name: e.toolCallName, args: '', complete: false, error: false };
        this.toolCalls.set(call.id, call);
        this.message(e.parentMessageId ?? call.id, 'assistant').toolCalls.push(call);
        this.trace.push({ kind: 'tool', toolCallId: call.id, seq: e.seq });
        break;
      }
      case 'TOOL_CALL_ARGS': {
        const call = this.toolCalls.get(e.toolCallId);
        if (call) call.args += e.delta;
        break;
      }
      case 'TOOL_CALL_END': {
        const call = this.toolCalls.get(e.toolCallId);
        if (call) call.complete = true;
        break;
      }
      case 'TOOL_CALL_RESULT': {
        const call = this.toolCalls.get(e.toolCallId);
        if (call) {
          call.result = e.content;
          call.error = e.error === true;
        }
        break;
      }
      case 'CUSTOM':
        // A regenerated answer replaced these (AI SDK regenerate): they leave the conversation, as on the server.
        if (e.name === 'conversation.superseded') this.supersede((e.value as { messageIds?: unknown } | null)?.messageIds);
        break;
      default:
        break;
    }
  }

  private supersede(ids: unknown): void {
    if (!Array.isArray(ids)) return;
    for (const id of ids) {
      const message = typeof id === 'string' ? this.byId.get(id) : undefined;
      if (!message) continue;
      this.byId.delete(message.id);
      this.messages.splice(this.messages.indexOf(message), 1);
    }
  }

  /** The messages a chat shows: everything but reasoning, and no empty assistant shells of tool-only turns. */
  visibleMessages(): Message[] {
    return this.messages.filter((m) => m.role !== 'reasoning' && (m.content.length > 0 || m.streaming || m.role === 'user'));
  }

  private reset(messages: SnapshotMessage[]): void {
    this.messages.length = 0;
    this.byId.clear();
    this.toolCalls.clear();
    for (const m of messages) {
      if (m.role === 'tool') {
        const call = this.toolCalls.get(m.toolCallId ?? '');
        if (call) call.result = m.content;
        continue;
      }
      const message = this.message(m.id, m.role);
      message.content += m.content ?? '';
      for (const c of m.toolCalls ?? []) {
        const call: ToolCall = { id: c.id, name: c.function.name, args: c.function.arguments, complete: true, error: false };
        this.toolCalls.set(call.id, call);
        message.toolCalls.push(call);
      }
    }
  }

  private message(id: string, role: string): Message {
    let message = this.byId.get(id);
    if (!message) {
      message = { id, role, content: '', streaming: false, toolCalls: [] };
      this.byId.set(id, message);
      this.messages.push(message);
    }
    return message;
  }
}

/**
 * Applies an RFC 6902 JSON Patch to a copy of `target`; a patch that does not apply leaves it unchanged, as the
 * gateway's own log does. Written here because the package promises no dependency but @microsoft/signalr, and the
 * six operations on plain JSON are short.
 */
export function applyPatch(target: unknown, patch: JsonPatchOperation[]): unknown {
  let doc = structuredClone(target);
  try {
    for (const op of patch) {
      switch (op.op) {
        case 'add': doc = put(doc, op.path, structuredClone(op.value), true); break;
        case 'replace': get(doc, op.path); doc = put(doc, op.path, structuredClone(op.value), false); break;
        case 'remove': doc = remove(doc, op.path); break;
        case 'copy': doc = put(doc, op.path, structuredClone(get(doc, op.from ?? '')), true); break;
        case 'move': {
          const value = get(doc, op.from ?? '');
          doc = put(remove(doc, op.from ?? ''), op.path, value, true);
          break;
        }
        case 'test':
          if (JSON.stringify(get(doc, op.path)) !== JSON.stringify(op.value)) throw new Error('test failed');
          break;
        default: throw new Error('unknown op');
      }
    }
    return doc;
  } catch {
    return target;
  }
}

/** The most trace items kept (a run with thousands of steps, or a flood of published state changes, stays bounded). */
const MAX_TRACE = 500;

// Keys that would reach an object's prototype machinery rather than plain data: a patch using them does not apply.
const unsafeKeys = new Set(['__proto__', 'constructor', 'prototype']);

const tokens = (path: string) => {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new Error('bad pointer');
  const parts = path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (parts.some((p) => unsafeKeys.has(p))) throw new Error('unsafe key');
  return parts;
};

type Container = Record<string, unknown> | unknown[];

function parentOf(doc: unknown, path: string): [Container, string] {
  const parts = tokens(path);
  const last = parts.pop();
  if (last === undefined) throw new Error('no parent');
  let node = doc;
  for (const part of parts) node = child(node, part);
  if (typeof node !== 'object' || node === null) throw new Error('not a container');
  return [node as Container, last];
}

function child(node: unknown, key: string): unknown {
  if (Array.isArray(node)) {
    const index = Number(key);
    if (!/^\d+$/.test(key) || index >= node.length) throw new Error('no such index');
    return node[index];
  }
  if (typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) throw new Error('no such member');
  return (node as Record<string, unknown>)[key];
}

function get(doc: unknown, path: string): unknown {
  let node = doc;
  for (const part of tokens(path)) node = child(node, part);
  return node;
}

function put(doc: unknown, path: string, value: unknown, insert: boolean): unknown {
  if (path === '') return value;
  const [parent, key] = parentOf(doc, path);
  if (Array.isArray(parent)) {
    const index = key === '-' ? parent.length : Number(key);
    if ((key !== '-' && !/^\d+$/.test(key)) || index > parent.length || (!insert && index >= parent.length)) throw new Error('bad index');
    parent.splice(index, insert ? 0 : 1, value);
  } else {
    parent[key] = value;
  }
  return doc;
}

function remove(doc: unknown, path: string): unknown {
  const [parent, key] = parentOf(doc, path);
  child(parent, key);
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else delete parent[key];
  return doc;
}
