// AiStream demo: watches a session over Server-Sent Events, renders the conversation word by word and shows who is
// here. Plain browser APIs only (EventSource, fetch); everything it shows comes from the session's event log.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const clientId = localStorage.getItem('aistream.clientId') || `web-${crypto.randomUUID().slice(0, 12)}`;
  localStorage.setItem('aistream.clientId', clientId);
  $('name').value = localStorage.getItem('aistream.name') || `Guest ${clientId.slice(-4)}`;

  let source = null;
  let sessionId = null;
  const members = new Map();
  let memberTotal = null; // the counted total while the session is crowded
  let listing = null;
  let listedAt = 0;
  const messages = new Map();
  let activeRun = null;
  let typingTimer = null;

  const setStatus = (text) => { $('status').textContent = text; };

  function renderPresence() {
    const list = $('presence');
    list.replaceChildren();
    for (const m of [...members.values()].sort((a, b) => a.id.localeCompare(b.id))) {
      const li = document.createElement('li');
      li.dataset.id = m.id;
      li.dataset.kind = m.kind;
      li.dataset.connections = String(m.connections ?? 0);
      li.textContent = `${m.name}${m.id === clientId ? ' (you)' : ''}`;
      const state = m.state || {};
      const note = m.kind === 'agent' ? state.status : state.typing ? 'typing…' : '';
      if (note) {
        const span = document.createElement('span');
        span.className = 'state';
        span.textContent = note;
        li.append(span);
      }
      list.append(li);
    }
    $('count').textContent = String(memberTotal ?? members.size);
  }

  // A crowded session counts joins and leaves into presence.count events instead of announcing them: show the count
  // at once, and read who is there (the first 100) at most every 30 s, at a random moment so that every watcher of a
  // big session does not ask at once.
  function refreshPresence() {
    if (listing || Date.now() - listedAt < 30000) return;
    const id = sessionId;
    listing = new Promise((resolve) => setTimeout(resolve, Math.random() * 5000))
      .then(() => fetch(`/api/sessions/${encodeURIComponent(id)}/presence?limit=100`))
      .then((response) => (response.ok ? response.json() : null))
      .then((body) => {
        if (!body || id !== sessionId) return;
        members.clear();
        for (const m of body.members) members.set(m.id, m);
        memberTotal = body.total;
        renderPresence();
      })
      .catch(() => {})
      .finally(() => { listing = null; listedAt = Date.now(); });
  }

  function messageElement(id, role) {
    let entry = messages.get(id);
    if (!entry) {
      const li = document.createElement('li');
      li.dataset.id = id;
      li.dataset.role = role;
      const who = document.createElement('span');
      who.className = 'who';
      who.textContent = role;
      const text = document.createElement('span');
      text.className = 'text';
      li.append(who, text);
      $('messages').append(li);
      entry = { li, text };
      messages.set(id, entry);
    }
    return entry;
  }

  // An agent's trace: a line per step, reasoning, tool call (arguments streaming in, then the result) and state change.
  function traceLine(id, role, text) {
    const entry = messageElement(id, role);
    entry.li.classList.add('trace');
    if (text !== undefined) entry.text.textContent = text;
    return entry;
  }

  function onEvent(e) {
    switch (e.type) {
      case 'STEP_STARTED':
        if (e.stepName.startsWith('model:')) traceLine(`step-${e.stepName}-${e.seq}`, 'step', `step ${e.stepName.slice(6)}: thinking`);
        break;
      case 'REASONING_MESSAGE_START':
        traceLine(e.messageId, 'thinking', '');
        break;
      case 'REASONING_MESSAGE_CONTENT':
        traceLine(e.messageId, 'thinking').text.textContent += e.delta;
        break;
      case 'TOOL_CALL_START':
        traceLine(e.toolCallId, 'tool', `${e.toolCallName}(`).li.classList.add('streaming');
        break;
      case 'TOOL_CALL_ARGS':
        traceLine(e.toolCallId, 'tool').text.textContent += e.delta;
        break;
      case 'TOOL_CALL_END':
        traceLine(e.toolCallId, 'tool').text.textContent += ')';
        traceLine(e.toolCallId, 'tool').li.classList.remove('streaming');
        break;
      case 'TOOL_CALL_RESULT': {
        const call = messages.has(e.toolCallId) ? traceLine(e.toolCallId, 'tool') : traceLine(e.messageId, 'tool', 'tool');
        call.text.textContent += ` → ${e.content}`;
        if (e.error) call.li.classList.add('failed');
        break;
      }
      case 'STATE_DELTA':
        traceLine(`state-${e.seq}`, 'state', e.delta.map((op) => `${op.op} ${op.path} ${JSON.stringify(op.value ?? null)}`).join('; '));
        break;
      case 'MESSAGES_SNAPSHOT':
        $('messages').replaceChildren();
        messages.clear();
        for (const m of e.messages) {
          if (typeof m.content === 'string' && m.content.length > 0) messageElement(m.id, m.role).text.textContent = m.content;
        }
        break;
      case 'TEXT_MESSAGE_START':
        messageElement(e.messageId, e.role || 'assistant').li.classList.add('streaming');
        break;
      case 'TEXT_MESSAGE_CONTENT':
        messageElement(e.messageId, 'assistant').text.textContent += e.delta;
        break;
      case 'TEXT_MESSAGE_END':
        messageElement(e.messageId, 'assistant').li.classList.remove('streaming');
        break;
      case 'RUN_STARTED':
        activeRun = e.runId;
        $('cancel').disabled = false;
        break;
      case 'RUN_FINISHED':
      case 'RUN_ERROR':
        activeRun = null;
        $('cancel').disabled = true;
        for (const { li } of messages.values()) li.classList.remove('streaming');
        if (e.type === 'RUN_ERROR') setStatus(`run failed: ${e.message}`);
        break;
      case 'CUSTOM':
        if (e.name === 'presence.snapshot') {
          members.clear();
          for (const m of e.value.members) members.set(m.id, m);
          memberTotal = e.value.counted ? e.value.total : null;
          if (e.value.counted) refreshPresence();
        } else if (e.name === 'presence.join' || e.name === 'presence.update') {
          members.set(e.value.id, e.value);
          if (e.name === 'presence.join') memberTotal = null; // announced one by one again: the map is the list
        } else if (e.name === 'presence.leave') {
          members.delete(e.value.id);
          memberTotal = null;
        } else if (e.name === 'presence.count') {
          memberTotal = e.value.members;
          refreshPresence();
        }
        renderPresence();
        break;
    }
  }

  function join(event) {
    event.preventDefault();
    source?.close();
    sessionId = $('session').value.trim();
    const name = $('name').value.trim();
    localStorage.setItem('aistream.name', name);
    members.clear();
    memberTotal = null;
    listedAt = 0;
    renderPresence();
    const query = new URLSearchParams({ clientId, name });
    source = new EventSource(`/api/sessions/${encodeURIComponent(sessionId)}/events?${query}`);
    source.onopen = () => setStatus(`in ${sessionId} as ${name}`);
    source.onerror = () => setStatus('reconnecting…'); // EventSource resumes with Last-Event-ID by itself
    source.onmessage = (message) => onEvent(JSON.parse(message.data));
    for (const id of ['text', 'send', 'mode']) $(id).disabled = false;
    loadAgents();
  }

  // Agents and prompt templates loaded by the gateway (prompts/), offered beside the plain model.
  async function loadAgents() {
    if ($('mode').options.length > 1) return;
    const response = await fetch('/api/agents');
    if (!response.ok) return;
    for (const agent of (await response.json()).data) {
      const option = document.createElement('option');
      option.value = agent.name;
      option.textContent = `Agent: ${agent.name}`;
      option.title = agent.description ?? '';
      $('mode').append(option);
    }
  }

  async function send(event) {
    event.preventDefault();
    const content = $('text').value.trim();
    if (!content || !sessionId) return;
    $('text').value = '';
    const response = await fetch(`/api/sessions/${encodeURIComponent(sessionId)}/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content }], ...($('mode').value ? { agent: $('mode').value } : {}) }),
    });
    if (!response.ok) setStatus(`could not start the run: ${(await response.json()).detail}`);
  }

  async function setState(state) {
    if (!sessionId) return;
    await fetch(`/api/sessions/${encodeURIComponent(sessionId)}/presence/state?clientId=${encodeURIComponent(clientId)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(state),
    });
  }

  $('mode').addEventListener('change', () => {
    $('text').placeholder = $('mode').value === 'researcher' ? 'e.g. What is 17 * 23? Write the answer to the findings.'
      : $('mode').value ? `Ask ${$('mode').value}…` : 'Ask the model…';
  });
  $('join').addEventListener('submit', join);
  $('prompt').addEventListener('submit', send);
  $('cancel').addEventListener('click', () => {
    if (activeRun) fetch(`/api/sessions/${encodeURIComponent(sessionId)}/runs/${encodeURIComponent(activeRun)}/cancel`, { method: 'POST' });
  });
  $('text').addEventListener('input', () => {
    if (!typingTimer) setState({ typing: true });
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => { typingTimer = null; setState({ typing: false }); }, 1500);
  });
  if (location.hash.length > 1) {
    $('session').value = decodeURIComponent(location.hash.slice(1));
    $('join').requestSubmit();
  }
})();
