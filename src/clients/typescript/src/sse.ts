// A Server-Sent Events reader over fetch. Written here rather than taken from a library because the browser's
// EventSource cannot send an Authorization header or report an HTTP status, reconnects on its own schedule (the
// client owns reconnection so that SSE and SignalR behave alike), and the package promises no dependency but
// @microsoft/signalr. It follows the WHATWG parsing rules for the fields the gateway sends: id, data and comments.

/** One dispatched SSE message, or a comment line (the gateway's `: disconnected: …` notice). */
export type SseItem = { kind: 'message'; id: string | undefined; data: string } | { kind: 'comment'; text: string };

/**
 * The most one message may hold (a catch-up snapshot of a long session is the largest the gateway sends): past it the
 * connection is treated as broken and reopened, instead of buffering without bound.
 */
const MAX_MESSAGE_CHARS = 64 * 1024 * 1024;

/** Reads `body` to its end, yielding each message as it completes. Stops early when `signal` aborts. */
export async function* readSse(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<SseItem> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  let id: string | undefined;
  let scanned = 0; // how much of the buffer is known to hold no line end: each chunk is scanned once
  let size = 0; // the characters of the message being read
  const abort = () => void reader.cancel().catch(() => {});
  signal.addEventListener('abort', abort, { once: true });
  try {
    while (!signal.aborted) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let start = 0;
      let i = scanned;
      for (; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        // A CR LF pair is one line end; a lone CR at the buffer's end waits for the next chunk.
        if (c === 13 && i + 1 >= buffer.length) break;
        const line = buffer.slice(start, i);
        if (c === 13 && buffer.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
        if (line === '') {
          if (data.length > 0) yield { kind: 'message', id, data: data.join('\n') };
          data = [];
          id = undefined;
          size = 0;
          continue;
        }
        size += line.length;
        if (size > MAX_MESSAGE_CHARS) throw new Error(`an SSE message over ${MAX_MESSAGE_CHARS} characters`);
        if (line.startsWith(':')) {
          yield { kind: 'comment', text: line.slice(1).trimStart() };
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'id' && !value.includes('\0')) id = value;
      }
      buffer = buffer.slice(start);
      scanned = Math.max(0, i - start);
      if (buffer.length > MAX_MESSAGE_CHARS) throw new Error(`an SSE line over ${MAX_MESSAGE_CHARS} characters`);
    }
  } finally {
    signal.removeEventListener('abort', abort);
    reader.releaseLock();
  }
}
