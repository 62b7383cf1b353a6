// The events of a session's log, as the gateway sends them on every transport: AG-UI 1.0 field names, camelCase,
// `timestamp` in milliseconds, and `seq`, the event's position (strictly increasing; the events of a catch-up
// snapshot all carry the position of the head they summarise). Checked against the gateway's own event shapes by
// tests/e2e/client.test.mjs, which validates every event of a recorded agent trace with `isSessionEvent`.

interface Base<T extends string> {
  type: T;
  /** The event's position in the session's log. */
  seq: number;
  timestamp?: number;
}

export type Role = 'user' | 'assistant' | 'system' | 'developer' | 'tool';

/** A member of a session: a person, a program, or a run (`kind: "agent"`, id `agent:<runId>`). */
export interface Member {
  id: string;
  name: string;
  kind: 'user' | 'agent' | string;
  color?: string;
  connections?: number;
  state?: Record<string, unknown>;
  /** On `presence.leave`: `left` or `expired`. */
  reason?: string;
}

/** A message of `MESSAGES_SNAPSHOT`, in AG-UI's shape. */
export interface SnapshotMessage {
  id: string;
  role: Role;
  content?: string;
  toolCalls?: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
  toolCallId?: string;
}

export interface JsonPatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: unknown;
}

export type RunStarted = Base<'RUN_STARTED'> & { runId: string; threadId?: string };
export type RunFinished = Base<'RUN_FINISHED'> & {
  runId: string;
  threadId?: string;
  outcome?: { type: 'success' | 'cancelled' | string; reason?: string };
};
export type RunError = Base<'RUN_ERROR'> & { runId?: string; message: string; code?: string };
export type StepStarted = Base<'STEP_STARTED'> & { stepName: string };
export type StepFinished = Base<'STEP_FINISHED'> & { stepName: string };
export type TextMessageStart = Base<'TEXT_MESSAGE_START'> & { messageId: string; role?: Role };
export type TextMessageContent = Base<'TEXT_MESSAGE_CONTENT'> & { messageId: string; delta: string };
export type TextMessageEnd = Base<'TEXT_MESSAGE_END'> & { messageId: string };
export type ReasoningStart = Base<'REASONING_START'> & { messageId: string };
export type ReasoningMessageStart = Base<'REASONING_MESSAGE_START'> & { messageId: string; role?: string };
export type ReasoningMessageContent = Base<'REASONING_MESSAGE_CONTENT'> & { messageId: string; delta: string };
export type ReasoningMessageEnd = Base<'REASONING_MESSAGE_END'> & { messageId: string };
export type ReasoningEnd = Base<'REASONING_END'> & { messageId: string };
export type ToolCallStart = Base<'TOOL_CALL_START'> & { toolCallId: string; toolCallName: string; parentMessageId?: string };
export type ToolCallArgs = Base<'TOOL_CALL_ARGS'> & { toolCallId: string; delta: string };
export type ToolCallEnd = Base<'TOOL_CALL_END'> & { toolCallId: string };
export type ToolCallResult = Base<'TOOL_CALL_RESULT'> & {
  toolCallId: string;
  messageId?: string;
  content: string;
  role?: 'tool';
  /** The gateway's flag on a failed tool's result (left out on strict `/agui`). */
  error?: boolean;
};
export type StateSnapshot = Base<'STATE_SNAPSHOT'> & { snapshot: unknown };
export type StateDelta = Base<'STATE_DELTA'> & { delta: JsonPatchOperation[] };
export type MessagesSnapshot = Base<'MESSAGES_SNAPSHOT'> & { messages: SnapshotMessage[] };
export type Custom = Base<'CUSTOM'> & { name: string; value?: unknown };

export type SessionEvent =
  | RunStarted | RunFinished | RunError | StepStarted | StepFinished
  | TextMessageStart | TextMessageContent | TextMessageEnd
  | ReasoningStart | ReasoningMessageStart | ReasoningMessageContent | ReasoningMessageEnd | ReasoningEnd
  | ToolCallStart | ToolCallArgs | ToolCallEnd | ToolCallResult
  | StateSnapshot | StateDelta | MessagesSnapshot | Custom;

export type EventType = SessionEvent['type'];

const str = (v: unknown) => typeof v === 'string';
const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

/** The fields each event type must carry, with their JSON types. */
const required: Record<EventType, Record<string, (v: unknown) => boolean>> = {
  RUN_STARTED: { runId: str },
  RUN_FINISHED: { runId: str },
  RUN_ERROR: { message: str },
  STEP_STARTED: { stepName: str },
  STEP_FINISHED: { stepName: str },
  TEXT_MESSAGE_START: { messageId: str },
  TEXT_MESSAGE_CONTENT: { messageId: str, delta: str },
  TEXT_MESSAGE_END: { messageId: str },
  REASONING_START: { messageId: str },
  REASONING_MESSAGE_START: { messageId: str },
  REASONING_MESSAGE_CONTENT: { messageId: str, delta: str },
  REASONING_MESSAGE_END: { messageId: str },
  REASONING_END: { messageId: str },
  TOOL_CALL_START: { toolCallId: str, toolCallName: str },
  TOOL_CALL_ARGS: { toolCallId: str, delta: str },
  TOOL_CALL_END: { toolCallId: str },
  TOOL_CALL_RESULT: { toolCallId: str, content: str },
  STATE_SNAPSHOT: {},
  STATE_DELTA: { delta: Array.isArray },
  MESSAGES_SNAPSHOT: { messages: Array.isArray },
  CUSTOM: { name: str },
};

/** Whether `value` is a session event this client knows, with every field its type requires. */
export function isSessionEvent(value: unknown): value is SessionEvent {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  const fields = typeof e.type === 'string' ? required[e.type as EventType] : undefined;
  return fields !== undefined && num(e.seq) && Object.entries(fields).every(([name, check]) => check(e[name]));
}

/** The presence events (`CUSTOM` named `presence.*`). */
export const isPresenceEvent = (e: SessionEvent): e is Custom => e.type === 'CUSTOM' && e.name.startsWith('presence.');
