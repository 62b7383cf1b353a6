// The AI SDK's own React hook, useChat from @ai-sdk/react, in a small React page in headless Chromium, against the
// gateway: a message streams, a second tab follows the same answer, a reload mid-answer resumes it to the same final
// text, and Stop ends it in both tabs. The page (aisdk-page/app.jsx) is bundled here with esbuild and served from the
// gateway's origin, as an app behind the same host would be.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { readSessionLog, runText, sessionId } from './lib.mjs';
import { eventually, launchBrowser, startGateway } from './processes.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
// esbuild is the clients' bundler (src/clients, installed by run.sh before the tests).
const esbuild = createRequire(fileURLToPath(new URL('../../src/clients/package.json', import.meta.url)))('esbuild');

async function bundle() {
  const result = await esbuild.build({
    entryPoints: [`${HERE}aisdk-page/app.jsx`],
    bundle: true,
    write: false,
    format: 'iife',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}

/** The session log's text of a run, and how it ended. */
async function runInLog(url, sid, runId) {
  const events = await readSessionLog(url, sid, (all) => all.some((e) => e.type === 'RUN_FINISHED' && e.runId === runId));
  return { text: runText(events, runId), outcome: events.find((e) => e.type === 'RUN_FINISHED' && e.runId === runId).outcome.type };
}

const answer = (page) => page.evaluate(() => {
  const items = [...document.querySelectorAll('#messages li[data-role="assistant"]')];
  const last = items.at(-1);
  return last ? { id: last.dataset.id, text: last.textContent, count: items.length } : { id: undefined, text: '', count: 0 };
});
const status = (page) => page.textContent('#status');

test('useChat (@ai-sdk/react) in Chromium: streams, a second tab follows, a reload resumes to the same text, Stop ends it in both', { timeout: 120_000 }, async (t) => {
  // Slow enough that the second tab and the reload really arrive mid-answer.
  const gateway = await startGateway({ AiStream__Providers__sim__TokensPerSecond: '8' });
  t.after(() => gateway.kill());
  const script = await bundle();
  const browser = await launchBrowser(t);
  const errors = [];
  const tab = async () => {
    const context = await browser.newContext();
    // The page comes from the gateway's origin; everything else it asks for goes to the real gateway.
    await context.route(`${gateway.url}/chat.html`, (route) => route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><html><body><div id="root"></div><script>${script.replaceAll('</script', '<\\/script')}</script></body></html>`,
    }));
    const page = await context.newPage();
    page.on('pageerror', (e) => errors.push(e.message));
    return page;
  };
  const sid = sessionId('usechat');
  const url = `${gateway.url}/chat.html#chat=${sid}`;

  const ann = await tab();
  await ann.goto(url);
  await ann.fill('#input', 'Tell me about resumable streams.');
  await ann.click('#send');
  await ann.waitForFunction(() => document.querySelector('#messages li[data-role="assistant"]')?.textContent.length > 20);
  const runId = (await answer(ann)).id;
  assert.match(runId, /^run_/);

  // A second tab with the same chat id follows the answer in progress (resume: true on mount).
  const bob = await tab();
  await bob.goto(url);
  await eventually('the second tab to show the answer', async () => (await answer(bob)).text.length > 20);
  assert.equal((await answer(bob)).id, runId);

  // Ann reloads mid-answer: the page comes back and resumes it from its start.
  const before = (await answer(ann)).text;
  await ann.reload();
  await eventually('the reloaded tab to resume', async () => (await answer(ann)).text.length > before.length, 15_000);

  for (const page of [ann, bob]) await page.waitForFunction(() => document.querySelector('#status').textContent === 'ready', null, { timeout: 60_000 });
  const first = await runInLog(gateway.url, sid, runId);
  assert.equal(first.outcome, 'success');
  assert.equal((await answer(ann)).text, first.text, 'the reloaded tab has the whole answer, once');
  assert.equal((await answer(bob)).text, first.text, 'the second tab has the same answer');
  assert.equal((await answer(ann)).count, 1);

  // A second question; Bob reloads to follow it; Ann's Stop ends it in both tabs.
  await ann.fill('#input', 'And another long one, please.');
  await ann.click('#send');
  await eventually('the second answer to stream', async () => (await answer(ann)).id !== runId && (await answer(ann)).text.length > 10);
  const secondRun = (await answer(ann)).id;
  await bob.reload();
  await eventually('the second tab to follow the second answer', async () => (await answer(bob)).id === secondRun && (await answer(bob)).text.length > 10);
  await ann.click('#stop');
  for (const page of [ann, bob]) await page.waitForFunction(() => document.querySelector('#status').textContent === 'ready', null, { timeout: 15_000 });
  const second = await runInLog(gateway.url, sid, secondRun);
  assert.equal(second.outcome, 'cancelled');
  assert.equal((await answer(bob)).text, second.text, 'the follower stopped where the run stopped');
  assert.deepEqual(errors, []);
  assert.equal(await ann.$('#error'), null);
  assert.equal(await bob.$('#error'), null);
});
