// @aistream/client: join an AiStream session from a browser or Node 20+.
export { AiStreamClient, SessionConnection, backoff } from './client.js';
export type { ClientOptions, JoinOptions, RunRequest, ConnectionState, ConnectionStatus } from './client.js';
export { AiStreamError, jwtClaims, jwtExpiry } from './transport.js';
export type { TransportKind } from './transport.js';
export { Conversation, applyPatch } from './conversation.js';
export type { Message, ToolCall, TraceItem } from './conversation.js';
export { Presence } from './presence.js';
export { isSessionEvent, isPresenceEvent } from './events.js';
export type * from './events.js';
