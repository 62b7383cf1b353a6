// The AiStream web app: a session's conversation, who is here and the agent trace, all folded by @aistream/client
// from the session's one event log, so two browsers on one link show the same thing as it happens.

import { AiStreamClient, AiStreamError, Conversation, type ConnectionState, type SessionConnection, type SessionEvent } from '@aistream/client';
import { clearToken, currentToken, isExpired, setToken, takeTokenFromFragment, whoIs } from './auth.js';
import { loadIdentity, saveName } from './identity.js';
import { ChatView, renderPresence, renderTrace } from './views.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
type Transport = 'auto' | 'signalr' | 'sse';

const identity = loadIdentity();
const chat = new ChatView();
let conversation = new Conversation();
let session: SessionConnection | undefined;
let sessionId = '';
let drawPending = false;
let typingTimer: ReturnType<typeof setTimeout> | undefined;
let typing = false;
let authRequired = false;

// ---- session and link ----

function parseFragment(): string | undefined {
  const hash = location.hash.slice(1);
  if (!hash) return undefined;
  const params = new URLSearchParams(hash.includes('=') ? hash : `s=${hash}`);
  const id = params.get('s') ?? undefined;
  // The token never stays in the address bar (or in a link copied from it).
  if (takeTokenFromFragment(hash)) history.replaceState(null, '', id ? `#s=${encodeURIComponent(id)}` : location.pathname);
  return id && /^[A-Za-z0-9._:-]{1,128}$/.test(id) ? id : undefined;
}

const newSessionId = () => `chat-${crypto.randomUUID().slice(0, 8)}`;

function rememberSession(id: string): void {
  const recent = [id, ...JSON.parse(localStorage.getItem('aistream.recent') ?? '[]').filter((s: string) => s !== id)].slice(0, 8);
  localStorage.setItem('aistream.recent', JSON.stringify(recent));
  $('recent-sessions').replaceChildren(...recent.map((s: string) => Object.assign(document.createElement('option'), { value: s })));
}

function open(id: string): void {
  session?.close();
  sessionId = id;
  $<HTMLInputElement>('session-id').value = id;
  if (location.hash !== `#s=${encodeURIComponent(id)}`) history.replaceState(null, '', `#s=${encodeURIComponent(id)}`);
  document.title = `${id} · AiStream`;
  rememberSession(id);
  conversation = new Conversation();
  chat.reset();
  typing = false;
  const client = new AiStreamClient({
    baseUrl: location.origin,
    clientId: identity.clientId,
    name: identity.name,
    color: identity.color,
    transport: (localStorage.getItem('aistream.transport') as Transport | null) ?? 'auto',
    accessToken: () => currentToken(),
  });
  session = client.join(id, { onEvent, onState, onPresence: draw });
  (window as unknown as { aistream: unknown }).aistream = api(client);
  draw();
}

// ---- events and drawing ----

function onEvent(e: SessionEvent): void {
  conversation.apply(e);
  if (e.type === 'RUN_ERROR') notice(`The run failed: ${e.message}`);
  if (e.type === 'CUSTOM' && e.name === 'auth.expired' && isExpired(currentToken())) signIn('Your token expired. Paste a fresh one to go on; nothing is lost meanwhile.');
  draw();
}

function draw(): void {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    chat.render(conversation);
    renderPresence(session!.presence, me());
    renderTrace(conversation);
    const running = conversation.activeRunId !== undefined;
    $<HTMLButtonElement>('stop').disabled = !running;
    $('composer').classList.toggle('running', running);
  });
}

/** This person's member id: the token's subject when signed in, else the browser's client id. */
function me(): string | undefined {
  const token = currentToken();
  return token ? whoIs(token)?.subject : identity.clientId;
}

function onState(state: ConnectionState): void {
  const badge = $('badge');
  badge.dataset.status = state.status;
  badge.textContent = state.status === 'live' ? `Live · ${state.transport === 'signalr' ? 'SignalR' : 'SSE'}`
    : state.status === 'reconnecting' ? `Reconnecting (attempt ${state.attempt})…`
      : state.status === 'connecting' ? 'Connecting…' : 'Offline';
  if (state.status === 'live') notice();
  const error = state.error;
  if (state.status === 'offline' && error instanceof AiStreamError) {
    if (error.status === 401) {
      authRequired = true;
      signIn(currentToken() ? 'That token was not accepted (expired or invalid). Paste a valid one.' : undefined);
    } else if (error.status === 403) {
      notice(`You cannot open this session: ${error.message}`);
    } else {
      notice(error.message);
    }
  }
  renderWho();
}

function notice(text?: string): void {
  const box = $('notice');
  box.hidden = !text;
  box.textContent = text ?? '';
}

// ---- sign-in and identity ----

function signIn(reason?: string): void {
  const dialog = $<HTMLDialogElement>('signin');
  $('signin-reason').textContent = reason ?? 'This gateway requires a token. Paste the JWT or API key your administrator gave you.';
  if (!dialog.open) dialog.showModal();
}

$('signin-form').addEventListener('submit', () => {
  const token = $<HTMLTextAreaElement>('signin-token').value.trim();
  if (!token) return;
  setToken(token);
  $<HTMLTextAreaElement>('signin-token').value = '';
  authRequired = true;
  if (session?.state.status === 'offline') open(sessionId);
  renderWho();
});

function renderWho(): void {
  const who = whoIs(currentToken());
  const button = $('whoami');
  button.textContent = authRequired || who ? (who ? who.name : 'Signed in') : identity.name;
  button.title = authRequired || who ? 'Signed in: click to sign out' : 'Your name: click to change it';
}

$('whoami').addEventListener('click', () => {
  if (authRequired || currentToken()) {
    clearToken();
    authRequired = true;
    open(sessionId);
    return;
  }
  $<HTMLInputElement>('profile-name').value = identity.name;
  $<HTMLDialogElement>('profile').showModal();
});
$('profile-cancel').addEventListener('click', () => $<HTMLDialogElement>('profile').close());
$('profile-form').addEventListener('submit', () => {
  const name = $<HTMLInputElement>('profile-name').value.trim();
  if (!name || name === identity.name) return;
  identity.name = name;
  saveName(name);
  open(sessionId);
});

// ---- composing, runs, typing ----

async function loadModes(): Promise<void> {
  const select = $<HTMLSelectElement>('mode');
  const get = async (path: string) => {
    try {
      const response = await fetch(path, { headers: currentToken() ? { authorization: `Bearer ${currentToken()}` } : {} });
      return response.ok ? ((await response.json()) as { data: Record<string, unknown>[] }).data : [];
    } catch {
      return [];
    }
  };
  const [models, prompts, agents] = await Promise.all([get('/v1/models'), get('/api/prompts'), get('/api/agents')]);
  const group = (label: string, kind: string, items: Record<string, unknown>[], key: string) => {
    if (items.length === 0) return undefined;
    const g = document.createElement('optgroup');
    g.label = label;
    for (const item of items) {
      const option = new Option(String(item[key]), `${kind}:${String(item[key])}`);
      option.title = String(item.description ?? '');
      if (kind === 'prompt') option.dataset.variable = String((item.variables as { name: string }[] | undefined)?.[0]?.name ?? 'text');
      g.append(option);
    }
    return g;
  };
  const groups = [group('Models', 'model', models.length ? models : [{ id: 'default' }], 'id'), group('Prompt templates', 'prompt', prompts, 'name'),
    group('Agents', 'agent', agents, 'name')].filter((g): g is HTMLOptGroupElement => g !== undefined);
  select.replaceChildren(...groups);
  select.value = localStorage.getItem('aistream.mode') ?? select.value;
  if (!select.value) select.selectedIndex = 0;
  updatePlaceholder();
}

function updatePlaceholder(): void {
  const [kind, name] = $<HTMLSelectElement>('mode').value.split(':', 2);
  $<HTMLTextAreaElement>('composer-text').placeholder = kind === 'agent'
    ? name === 'researcher' ? 'e.g. What is 17 * 23? Write the answer to the findings.' : `Ask the ${name} agent…`
    : kind === 'prompt' ? `Text for the ${name} template…` : 'Ask the model…';
}

$('mode').addEventListener('change', () => {
  localStorage.setItem('aistream.mode', $<HTMLSelectElement>('mode').value);
  updatePlaceholder();
});

async function send(): Promise<void> {
  const box = $<HTMLTextAreaElement>('composer-text');
  const content = box.value.trim();
  if (!content || !session) return;
  const select = $<HTMLSelectElement>('mode');
  const [kind, name] = select.value.split(':', 2) as [string, string];
  const body = kind === 'prompt'
    ? { prompt: name, variables: { [select.selectedOptions[0]?.dataset.variable ?? 'text']: content } }
    : { messages: [{ role: 'user', content }], ...(kind === 'agent' ? { agent: name } : name && name !== 'default' ? { model: name } : {}) };
  box.value = '';
  stopTyping();
  try {
    await session.startRun(body);
  } catch (error) {
    box.value = content;
    notice(`Could not start: ${(error as Error).message}`);
  }
}

async function stop(): Promise<void> {
  const runId = conversation.activeRunId;
  if (runId && session) await session.cancelRun(runId).catch((error: Error) => notice(`Could not stop: ${error.message}`));
}

function stopTyping(): void {
  clearTimeout(typingTimer);
  typingTimer = undefined;
  if (typing) {
    typing = false;
    void session?.setState({ typing: false }).catch(() => {});
  }
}

$('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
$('composer-text').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    void send();
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && conversation.activeRunId && !document.querySelector('dialog[open]')) void stop();
});
$('stop').addEventListener('click', () => void stop());
$('composer-text').addEventListener('input', () => {
  if ($<HTMLTextAreaElement>('composer-text').value.trim() === '') return stopTyping();
  if (!typing) {
    typing = true;
    void session?.setState({ typing: true }).catch(() => {});
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 2000);
});

// ---- top bar ----

$('session-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = $<HTMLInputElement>('session-id').value.trim();
  if (id && id !== sessionId) open(id);
});
$('new-session').addEventListener('click', () => open(newSessionId()));
$('share').addEventListener('click', async () => {
  const link = `${location.origin}${location.pathname}#s=${encodeURIComponent(sessionId)}`;
  try {
    await navigator.clipboard.writeText(link);
    notice(`Link copied: ${link}`);
  } catch {
    notice(`Share this link: ${link}`);
  }
  setTimeout(() => notice(), 4000);
});
$<HTMLSelectElement>('transport').value = localStorage.getItem('aistream.transport') ?? 'auto';
$('transport').addEventListener('change', () => {
  localStorage.setItem('aistream.transport', $<HTMLSelectElement>('transport').value);
  open(sessionId);
});
function applyTheme(theme: string): void {
  document.documentElement.dataset.theme = theme;
  $('theme').setAttribute('aria-label', theme === 'dark' ? 'Switch to the light theme' : 'Switch to the dark theme');
}
$('theme').addEventListener('click', () => {
  const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  localStorage.setItem('aistream.theme', next);
  applyTheme(next);
});
window.addEventListener('hashchange', () => {
  const id = parseFragment();
  if (id && id !== sessionId) open(id);
});

/** What a host page (or a test) may call: set a refreshed token, read the session and its conversation. */
function api(client: AiStreamClient) {
  return {
    client,
    setToken: (token: string) => {
      setToken(token);
      renderWho();
      if (session?.state.status === 'offline') open(sessionId);
    },
    get sessionId() { return sessionId; },
    get conversation() { return conversation; },
    get connection() { return session; },
  };
}

applyTheme(document.documentElement.dataset.theme ?? 'light');
open(parseFragment() ?? JSON.parse(localStorage.getItem('aistream.recent') ?? '[]')[0] ?? newSessionId());
void loadModes();
