// Browser test of the proxy hooks (docs/backend.md): a real Chromium page
// with a session cookie for the server's origin connects without a token
// (the connect hook reads the cookie from the WebSocket handshake, and
// from the SSE request), publishes through the publish hook, which
// rewrites, and calls the rpc hook. The application backend is a small
// node:http server in this process, on loopback.
//
// E2E_VERBOSE=1 shows the server's log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';

const API_KEY = 'e2e-backend-key';
const { BUILD_TIMEOUT } = harness;
const WAIT = 30_000;
const TEST_TIMEOUT = 120_000;

let tmpDir;
let bin;
let context;
let backend;
let srv;
const calls = []; // every hook call the backend received: { hook, body, cookie }

function startBackend() {
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const hook = req.url.slice(1);
      const body = JSON.parse(raw);
      calls.push({ hook, body, cookie: req.headers.cookie ?? '' });
      const user = (req.headers.cookie ?? '').includes('session=alice-secret') ? 'alice' : '';
      let answer;
      switch (hook) {
        case 'connect':
          answer = user ? { result: { user, data: { hello: user } } } : { error: { code: 401, message: 'log in' } };
          break;
        case 'publish':
          answer = { result: { data: { text: String(body.data.text).toUpperCase(), by: body.user } } };
          break;
        case 'rpc':
          answer = body.method === 'whoami' ? { result: { data: { user: body.user } } } : { error: { code: 3404, message: 'no such method' } };
          break;
        default:
          answer = { result: {} };
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-backend-'));
  bin = await harness.binary(tmpDir);
  backend = await startBackend();
  const base = `http://127.0.0.1:${backend.address().port}`;
  srv = await harness.startServer(bin, '127.0.0.1:0', API_KEY, [
    '--allow-anonymous=false',
    '--proxy-connect-endpoint', `${base}/connect`,
    '--proxy-subscribe-endpoint', `${base}/subscribe`,
    '--proxy-publish-endpoint', `${base}/publish`,
    '--proxy-rpc-endpoint', `${base}/rpc`,
  ]);
  context = await harness.launchBrowser(tmpDir);
  await context.grantPermissions(['local-network-access'], { origin: srv.url.slice(0, -1) });
  await context.addCookies([{ name: 'session', value: 'alice-secret', url: srv.url }]);
}, { timeout: BUILD_TIMEOUT + 30_000 });

after(async () => {
  await context?.close().catch(() => {});
  if (srv) await harness.stopServer(srv);
  harness.killAll();
  backend?.close();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

async function openPage() {
  const page = await context.newPage();
  const html = `<!doctype html><meta charset="utf-8"><title>backend test</title>
<script type="module">
import * as SB from '/sdk/switchboard.js';
window.SB = SB;
window.sdkLoaded = true;
</script>`;
  await page.route(`${srv.url}backend-test.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.goto(`${srv.url}backend-test.html`, { timeout: WAIT });
  await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
  return page;
}

test('a session cookie connects over WebSocket and SSE; publish is rewritten; rpc is answered', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openPage();
  const res = await page.evaluate(async () => {
    const got = [];
    // Not shared: each client must make its own request with the cookie.
    const ws = new SB.Switchboard(location.origin.replace('http', 'ws'), { transports: ['websocket'], outbox: false, sharedConnection: false });
    const sse = new SB.Switchboard(location.origin.replace('http', 'ws'), { transports: ['sse'], outbox: false, sharedConnection: false });
    const sub = sse.subscribe('chat', { onPublication: (p) => got.push(p.data) });
    await sub.ready;
    const me = await ws.rpc('whoami');
    let refused = 0;
    await ws.rpc('nope').catch((e) => (refused = e.code));
    await ws.publish('chat', { text: 'hello' });
    const deadline = Date.now() + 10_000;
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    ws.close();
    sse.close();
    return { me, refused, got };
  });
  assert.deepEqual(res.me, { user: 'alice' });
  assert.equal(res.refused, 3404);
  assert.deepEqual(res.got, [{ text: 'HELLO', by: 'alice' }]);
  const connects = calls.filter((c) => c.hook === 'connect');
  assert.ok(connects.some((c) => c.body.transport === 'websocket' && c.body.headers?.Cookie?.includes('session=alice-secret') && c.cookie.includes('session=alice-secret')), 'the WebSocket handshake carried the cookie to the hook');
  assert.ok(connects.some((c) => c.body.transport === 'sse' && c.cookie.includes('session=alice-secret')), 'the SSE request carried the cookie to the hook');
  // A same-origin GET (the SSE request) carries no Origin; a handshake does.
  assert.ok(connects.some((c) => c.body.transport === 'websocket' && c.body.headers?.Origin === srv.url.slice(0, -1)), 'Origin is passed');
  await page.close();
});
