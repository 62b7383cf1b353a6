// Bundles the web app into the gateway's wwwroot (app.js and app.css, no CDN): esbuild, minified, deterministic, so
// the committed bundle is byte for byte what this script produces (tests/e2e/webapp.test.mjs checks it).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const out = here('../../AiStream.Gateway/wwwroot/');
const check = process.argv.includes('--outdir') ? process.argv[process.argv.indexOf('--outdir') + 1] : undefined;

await build({
  entryPoints: { app: here('src/main.ts') },
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  platform: 'browser',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  // @microsoft/signalr's Node-only paths (ws, node-fetch…) are loaded at run time only under Node.
  external: ['ws', 'node-fetch', 'fetch-cookie', 'abort-controller', 'eventsource', 'tough-cookie', 'util', 'url', 'http', 'https'],
  outdir: check ?? out,
  logLevel: 'warning',
});
await build({
  entryPoints: { app: here('src/styles.css') },
  bundle: true,
  minify: true,
  charset: 'utf8',
  outdir: check ?? out,
  logLevel: 'warning',
});
