// Real processes for the tests that need their own: a gateway (with its own settings, restartable on the same
// port), a redis-server on a free loopback port, a TCP proxy that can cut every connection through it (the network
// failing between a client and the gateway), headless Chromium, and HS256 tokens. Not a test file.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const freePort = () => new Promise((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitReady(url, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200) return;
    } catch { /* not listening yet */ }
    await sleep(100);
  }
  throw new Error(`the gateway at ${url} did not become ready`);
}

/** A gateway process of the test's own on a fixed port, so it can be killed and started again at the same address. */
export async function startGateway(env = {}, port = undefined) {
  const dll = process.env.GATEWAY_DLL;
  assert.ok(dll, 'GATEWAY_DLL is not set: run the suite with tests/e2e/run.sh');
  const gateway = { port: port ?? await freePort(), process: undefined, log: '' };
  gateway.url = `http://127.0.0.1:${gateway.port}`;
  gateway.start = async () => {
    gateway.process = spawn('dotnet', [dll, '--urls', gateway.url], {
      env: {
        ...process.env,
        ASPNETCORE_URLS: '',
        AiStream__Providers__sim__TokensPerSecond: '60',
        AiStream__Providers__sim__TimeToFirstTokenMs: '20',
        AiStream__Presence__LeaveGraceSeconds: '1',
        Logging__LogLevel__Default: 'Warning',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk) => { gateway.log = (gateway.log + chunk).slice(-20_000); };
    gateway.process.stdout.on('data', keep);
    gateway.process.stderr.on('data', keep);
    await waitReady(gateway.url);
  };
  /** SIGKILL: no goodbye to anyone. */
  gateway.kill = async () => {
    const p = gateway.process;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((resolve) => p.once('exit', resolve));
    p.kill('SIGKILL');
    await exited;
  };
  await gateway.start();
  return gateway;
}

/** redis-server on a free loopback port, with nothing persisted. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => { socket.end(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (ok) return { connectionString: `127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not start');
}

/** A TCP proxy to `target` (a gateway URL); `cut()` destroys every connection through it, as a network failure would. */
export async function startProxy(target) {
  const { port: targetPort } = new URL(target);
  const sockets = new Set();
  const server = createServer((client) => {
    const upstream = connect(Number(targetPort), '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => { client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    get connections() { return sockets.size; },
    cut: () => { for (const s of sockets) s.destroy(); },
    close: () => { for (const s of sockets) s.destroy(); server.close(); },
  };
}

export async function launchBrowser(t) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  return browser;
}

/** An HS256 JWT signed with `key`, as any identity provider would issue it. */
export function jwt(key, sub, { sessions = { '*': ['read', 'write'] }, lifetimeSeconds = 3600, name = sub, scope = 'completions' } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ sub, name, exp: Math.floor(Date.now() / 1000) + lifetimeSeconds, scope, sessions });
  return `${head}.${body}.${createHmac('sha256', key).update(`${head}.${body}`).digest('base64url')}`;
}

export const signingKey = () => randomBytes(32).toString('hex');

/** Polls `check` until it returns something other than undefined/false, at most `ms`. */
export async function eventually(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last !== undefined && last !== false) return last;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}
