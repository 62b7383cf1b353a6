// The page's views, each redrawn from the client's models (Conversation, Presence) on the next animation frame after
// events arrive: many tokens in one frame cost one redraw. Only messages that changed are rendered again.

import type { Conversation, Member, Message, Presence, TraceItem } from '@aistream/client';
import { colorOf, initials, textOn } from './identity.js';
import { renderMarkdown } from './markdown.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The conversation, kept scrolled to the newest text unless the reader scrolled up to read. */
export class ChatView {
  private readonly list = $<HTMLOListElement>('messages');
  private readonly scroller = $<HTMLDivElement>('scroller');
  private readonly jump = $<HTMLButtonElement>('jump');
  private readonly rendered = new Map<string, { li: HTMLLIElement; body: HTMLDivElement; tools: HTMLUListElement; key: string }>();
  private stick = true;

  constructor() {
    this.scroller.addEventListener('scroll', () => {
      const atBottom = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 48;
      this.stick = atBottom;
      if (atBottom) this.jump.hidden = true;
    }, { passive: true });
    this.jump.addEventListener('click', () => this.toBottom());
  }

  reset(): void {
    this.list.replaceChildren();
    this.rendered.clear();
    this.stick = true;
  }

  render(conversation: Conversation): void {
    const messages = conversation.visibleMessages();
    const seen = new Set<string>();
    let changed = false;
    let previous: HTMLLIElement | undefined;
    for (const m of messages) {
      seen.add(m.id);
      let entry = this.rendered.get(m.id);
      if (!entry) {
        entry = this.create(m);
        this.rendered.set(m.id, entry);
      }
      const expected = previous ? previous.nextElementSibling : this.list.firstElementChild;
      if (expected !== entry.li) {
        this.list.insertBefore(entry.li, expected);
        changed = true;
      }
      previous = entry.li;
      const key = `${m.content.length}|${m.streaming}|${m.toolCalls.map((c) => `${c.args.length}${c.result === undefined ? '' : 'r'}`).join(',')}`;
      if (key !== entry.key) {
        entry.key = key;
        this.fill(entry, m);
        changed = true;
      }
    }
    for (const [id, entry] of this.rendered) {
      if (!seen.has(id)) {
        entry.li.remove();
        this.rendered.delete(id);
        changed = true;
      }
    }
    $('empty').hidden = messages.length > 0;
    if (!changed) return;
    if (this.stick) this.toBottom();
    else this.jump.hidden = false;
  }

  private toBottom(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.stick = true;
    this.jump.hidden = true;
  }

  private create(m: Message) {
    const li = el('li', 'message');
    li.dataset.role = m.role;
    li.dataset.id = m.id;
    const avatar = el('span', 'avatar', m.role === 'user' ? 'U' : 'AI');
    avatar.setAttribute('aria-hidden', 'true');
    const bubble = el('div', 'bubble');
    const who = el('div', 'who', m.role === 'user' ? 'User' : m.role === 'assistant' ? 'Assistant' : m.role);
    const body = el('div', 'content');
    const tools = el('ul', 'tool-chips');
    bubble.append(who, body, tools);
    li.append(avatar, bubble);
    return { li, body, tools, key: '' };
  }

  private fill(entry: { li: HTMLLIElement; body: HTMLDivElement; tools: HTMLUListElement }, m: Message): void {
    entry.li.classList.toggle('streaming', m.streaming);
    // Markdown is rendered again on each frame while a message streams: past a size where that would stall the page,
    // the text is shown plain while it streams, and as Markdown once (below a hard cap) when it is complete.
    const markdown = m.role !== 'user' && m.content.length <= (m.streaming ? STREAMING_MARKDOWN_CHARS : MAX_MARKDOWN_CHARS);
    if (markdown) entry.body.innerHTML = renderMarkdown(m.content, m.streaming);
    else entry.body.textContent = m.content;
    entry.body.classList.toggle('plain', !markdown && m.role !== 'user');
    entry.tools.replaceChildren(...m.toolCalls.map((c) => {
      const chip = el('li', `chip${c.error ? ' failed' : ''}`, `${c.name}(${c.args})${c.result === undefined ? '' : ` → ${c.result}`}`);
      return chip;
    }));
  }
}

/** Avatars with colours and initials, what each member is doing, and who is typing. */
export function renderPresence(presence: Presence, me: string | undefined): void {
  const list = $<HTMLUListElement>('members');
  const members = presence.list();
  list.replaceChildren(...members.map((m) => memberItem(m, m.id === me)));
  $('member-count').textContent = String(presence.count);
  const typing = members.filter((m) => m.id !== me && m.kind !== 'agent' && m.state?.typing === true).map((m) => m.name);
  $('mode-hint').textContent = typing.length === 0 ? '' : `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…`;
}

function memberItem(m: Member, isMe: boolean): HTMLLIElement {
  const li = el('li', 'member');
  li.dataset.id = m.id;
  li.dataset.kind = m.kind;
  const avatar = el('span', 'avatar', m.kind === 'agent' ? '✦' : initials(m.name));
  const background = colorOf(m.id, m.color);
  avatar.style.background = background;
  avatar.style.color = textOn(background);
  avatar.setAttribute('aria-hidden', 'true');
  const name = el('span', 'name', `${m.name}${isMe ? ' (you)' : ''}`);
  li.append(avatar, name);
  const note = activity(m);
  if (note) li.append(el('span', 'activity', note));
  return li;
}

function activity(m: Member): string {
  const state = m.state ?? {};
  if (m.kind === 'agent') {
    if (state.status === 'calling_tool') return `calling ${String(state.tool ?? 'a tool')}`;
    return typeof state.status === 'string' ? `${state.status}…` : '';
  }
  return state.typing === true ? 'typing…' : '';
}

const STREAMING_MARKDOWN_CHARS = 32 * 1024;
const MAX_MARKDOWN_CHARS = 512 * 1024;

let drawnTrace: { conversation: Conversation; revision: number } | undefined;

/** The current run's steps, reasoning, tool calls (arguments streaming in, then results) and state changes. */
export function renderTrace(conversation: Conversation): void {
  if (drawnTrace?.conversation === conversation && drawnTrace.revision === conversation.revision) return;
  drawnTrace = { conversation, revision: conversation.revision };
  const list = $<HTMLOListElement>('trace');
  list.replaceChildren(...conversation.trace.map((item) => traceItem(item, conversation)));
  $('trace-empty').hidden = conversation.trace.length > 0;
  $('state').textContent = JSON.stringify(conversation.state, null, 2);
}

function traceItem(item: TraceItem, conversation: Conversation): HTMLLIElement {
  const li = el('li', `trace-item ${item.kind}`);
  switch (item.kind) {
    case 'step': {
      const [kind, name] = item.name.split(':', 2) as [string, string | undefined];
      li.append(el('span', 'label', kind === 'model' ? `Model turn ${name ?? ''}` : kind === 'tool' ? `Tool ${name ?? ''}` : item.name));
      li.classList.toggle('running', !item.finished);
      break;
    }
    case 'reasoning': {
      const message = conversation.messages.find((m) => m.id === item.messageId);
      li.append(el('span', 'label', 'Thinking'), el('p', 'detail', message?.content ?? ''));
      break;
    }
    case 'tool': {
      const call = conversation.toolCalls.get(item.toolCallId);
      li.append(el('span', 'label', `${call?.name ?? 'tool'}(…)`), el('code', 'detail args', call?.args ?? ''));
      if (call?.result !== undefined) li.append(el('code', `detail result${call.error ? ' failed' : ''}`, `→ ${call.result}`));
      li.classList.toggle('running', !call?.complete || call.result === undefined);
      break;
    }
    case 'state':
      li.append(el('span', 'label', 'State'), el('code', 'detail', item.delta.map((op) => `${op.op} ${op.path}${op.value === undefined ? '' : ` = ${JSON.stringify(op.value)}`}`).join('; ')));
      break;
  }
  return li;
}
