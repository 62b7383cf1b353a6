// The demo page in real headless Chromium: two tabs of one person and a curl watcher in one session. Presence counts
// the tabs as one member with two connections, the conversation renders word by word in both tabs, and everyone
// leaves correctly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { GATEWAY_URL, WAIT_MS, sessionId } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

async function presence(sid) {
  const response = await fetch(`${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/presence`);
  assert.equal(response.status, 200);
  return response.json();
}

/** Polls `check` (which returns a value or undefined) until it yields, at most `ms`. */
async function eventually(what, check, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last !== undefined && last !== false) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const membersOf = (p) => Object.fromEntries(p.members.map((m) => [m.id, m.connections]));

test('two tabs and a curl watcher: one member per person, text word by word in both tabs, clean leaves', { timeout: 60_000 }, async (t) => {
  const sid = sessionId('browser');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext(); // tabs of one browser profile share localStorage: one client id
  const tab1 = await context.newPage();
  const tab2 = await context.newPage();
  const pageErrors = [];
  for (const tab of [tab1, tab2]) tab.on('pageerror', (error) => pageErrors.push(error.message));

  const curl = spawn('curl', ['-sN', `${GATEWAY_URL}/api/sessions/${encodeURIComponent(sid)}/events?clientId=curl-1&name=Curl`]);
  let curlOutput = '';
  curl.stdout.on('data', (chunk) => { curlOutput += chunk; });
  t.after(() => curl.kill('SIGKILL'));
  // curl watches before the tabs open, so it sees the person's join live (not inside its catch-up snapshot).
  await eventually('curl to be watching', async () => curlOutput.includes('retry:'));

  await tab1.goto(`${GATEWAY_URL}/#${sid}`);
  await tab2.goto(`${GATEWAY_URL}/#${sid}`);
  const webId = await tab1.evaluate(() => localStorage.getItem('aistream.clientId'));
  assert.match(webId, /^web-/);
  assert.equal(await tab2.evaluate(() => localStorage.getItem('aistream.clientId')), webId);

  // The gateway sees two members: the person with two connections, curl with one.
  const both = await eventually('two tabs and curl in GET presence', async () => {
    const p = await presence(sid);
    const m = membersOf(p);
    return p.total === 2 && m[webId] === 2 && m['curl-1'] === 1 ? p : undefined;
  });
  assert.equal(both.members.length, 2);
  // And so does each tab's own presence list, built from the session's events: the person once, and curl.
  for (const tab of [tab1, tab2]) {
    await tab.waitForFunction((ids) => {
      const shown = [...document.querySelectorAll('#presence li')].map((li) => li.dataset.id).sort();
      return JSON.stringify(shown) === JSON.stringify(ids);
    }, [webId, 'curl-1'].sort(), { timeout: WAIT_MS });
  }

  // A prompt typed in tab 1 streams into tab 2 word by word.
  const lengths = [];
  await tab2.exposeFunction('recordLength', (n) => lengths.push(n));
  await tab2.evaluate(() => {
    new MutationObserver(() => {
      const text = document.querySelector('#messages li[data-role="assistant"] .text');
      if (text) window.recordLength(text.textContent.length);
    }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
  });
  await tab1.fill('#text', 'Tell me about streaming gateways');
  await tab1.click('#send');
  const finalText = async (tab) => {
    await tab.waitForFunction(() => {
      const li = document.querySelector('#messages li[data-role="assistant"]');
      return li && !li.classList.contains('streaming') && li.querySelector('.text').textContent.length > 0;
    }, null, { timeout: WAIT_MS });
    return tab.$eval('#messages li[data-role="assistant"] .text', (el) => el.textContent);
  };
  const text1 = await finalText(tab1);
  const text2 = await finalText(tab2);
  assert.equal(text2, text1);
  assert.ok(text1.split(' ').length > 20, 'the simulated model answered in prose');
  const distinct = [...new Set(lengths)];
  assert.ok(distinct.length > 10, `tab 2 rendered the answer incrementally (${distinct.length} distinct lengths)`);
  assert.equal(await tab2.$eval('#messages li[data-role="user"] .text', (el) => el.textContent), 'Tell me about streaming gateways');
  // curl saw the same words.
  const curlText = curlOutput.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)))
    .filter((e) => e.type === 'TEXT_MESSAGE_CONTENT' && e.delta !== 'Tell me about streaming gateways').map((e) => e.delta).join('');
  assert.equal(curlText, text1);

  // Closing one tab changes nothing visible: still one member, now with one connection.
  await tab1.close();
  await eventually('one connection left for the person', async () => membersOf(await presence(sid))[webId] === 1);
  assert.equal((await presence(sid)).total, 2);

  // Closing the last tab is a leave (after the grace period); curl stays.
  await tab2.close();
  await eventually('the person to leave', async () => {
    const p = await presence(sid);
    return p.total === 1 && membersOf(p)['curl-1'] === 1;
  }, 15_000);
  // A reload-free history: exactly one join and one leave for the person, as curl saw it.
  await eventually('curl to see the leave', () => curlOutput.includes(`"name":"presence.leave","value":{"id":"${webId}"`));
  const presenceEvents = curlOutput.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)))
    .filter((e) => e.type === 'CUSTOM' && e.value?.id === webId && (e.name === 'presence.join' || e.name === 'presence.leave'));
  assert.deepEqual(presenceEvents.map((e) => e.name), ['presence.join', 'presence.leave']);

  // Killing curl without a goodbye: it leaves too.
  curl.kill('SIGKILL');
  await eventually('curl to leave', async () => (await presence(sid)).total === 0, 15_000);
  assert.deepEqual(pageErrors, []);
});

test('the demo page runs the researcher agent: its steps, tool calls and state change appear in order in two tabs', { timeout: 60_000 }, async (t) => {
  const sid = sessionId('browser-agent');
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
  t.after(() => browser.close());
  const [one, two] = [await (await browser.newContext()).newPage(), await (await browser.newContext()).newPage()];
  const pageErrors = [];
  for (const tab of [one, two]) tab.on('pageerror', (error) => pageErrors.push(error.message));
  await one.goto(`${GATEWAY_URL}/#${sid}`);
  await two.goto(`${GATEWAY_URL}/#${sid}`);

  await eventually('the agents to be offered', async () => (await one.locator('#mode option[value="researcher"]').count()) === 1);
  await one.selectOption('#mode', 'researcher');
  await one.fill('#text', 'What is 17 * 23? Write the answer to the findings.');
  await one.click('#send');

  const traceOf = (tab) => tab.locator('#messages li.trace').evaluateAll((items) => items.map((li) => `${li.dataset.role}: ${li.querySelector('.text').textContent}`));
  for (const tab of [one, two]) {
    const trace = await eventually('the trace to finish', async () => {
      const lines = await traceOf(tab);
      return lines.filter((l) => l.startsWith('step:')).length === 3 && lines.some((l) => l.startsWith('state:')) ? lines : undefined;
    });
    const kinds = trace.map((l) => l.split(':')[0]).filter((k, i, all) => i === 0 || k !== all[i - 1]);
    assert.deepEqual(kinds, ['step', 'thinking', 'tool', 'step', 'thinking', 'tool', 'state', 'step']);
    assert.ok(trace.includes('tool: calculate({"expression":"17 * 23"}) → 391'), trace.join('\n'));
    assert.ok(trace.includes('state: add /findings "391"'), trace.join('\n'));
    await eventually('the answer', async () => (await tab.locator('#messages li[data-role="assistant"] .text').last().textContent())?.includes('calculate gave 391'));
  }
  assert.deepEqual(pageErrors, []);
});
