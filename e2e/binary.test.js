// Browser test of the binary protocol (subprotocol switchboard.v1.protobuf)
// in headless Chromium against the real switchboard binary: a page whose
// SDK client speaks the binary protocol subscribes, publishes JSON and
// binary data (Uint8Array) and receives both; a plain browser WebSocket
// speaking JSON on the same channel sees binary data in its documented
// JSON form, {"$binary":"<base64>"}, and what it publishes in that form
// reaches the binary client as bytes. History carries the bytes too. A
// second page does the same through the SDK's default shared connection
// (a SharedWorker holds it): bytes come back as bytes only if the worker's
// connection speaks the binary protocol. Every wait is bounded; nothing is
// timed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as harness from './harness.js';

const API_KEY = 'e2e-binary-key';
const WAIT = 30_000;
const TEST_TIMEOUT = 120_000;

let context;
let srv;

harness.suite('binary', API_KEY, ['--history-size', '100'], (s) => ({ context, srv } = s));

// The page: window.bc, an SDK client on the binary protocol, recording
// what it receives in window.bgot (Uint8Array data as {bytes:[...]}), and
// window.jws, a bare WebSocket speaking JSON, recording in window.jgot.
const page_html = `<!doctype html><meta charset="utf-8"><title>binary test</title>
<script type="module">
import * as SB from '/sdk/switchboard.js';
const url = location.origin.replace('http', 'ws');
const show = (d) => (d instanceof Uint8Array ? { bytes: Array.from(d) } : d);
window.bgot = []; window.jgot = []; window.jreplies = {};
window.bc = new SB.Switchboard(url, { protocol: 'protobuf', transports: ['websocket'], sharedConnection: false });
window.bsub = bc.subscribe('bin', { onPublication: (p) => bgot.push({ offset: p.offset, data: show(p.data) }) });
window.jws = new WebSocket(url + '/ws');
jws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (typeof m.id === 'number') jreplies[m.id] = m;
  else if (m.channel === 'bin' && 'data' in m) jgot.push(m);
};
jws.onopen = () => jws.send(JSON.stringify({ id: 1, command: 'subscribe', channel: 'bin' }));
window.loaded = true;
</script>`;

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 20 });
  } catch (err) {
    const snap = await page.evaluate(() => ({ bgot: window.bgot, jgot: window.jgot, state: window.bc?.state, sub: window.bsub?.state })).catch(() => ({}));
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(snap)}`, { cause: err });
  }
}

test('binary protocol in Chromium: JSON and Uint8Array data, a JSON subscriber sees {"$binary"}', { timeout: TEST_TIMEOUT }, async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  // Frames by kind: the SDK's connection must be all binary, the bare
  // WebSocket's all text.
  const frames = { binary: 0, text: 0 };
  page.on('websocket', (ws) => {
    const count = (f) => frames[typeof f.payload === 'string' ? 'text' : 'binary']++;
    ws.on('framesent', count);
    ws.on('framereceived', count);
  });
  await page.route(`${srv.url}binary-test.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: page_html }));
  await page.goto(`${srv.url}binary-test.html`, { timeout: WAIT });
  await waitFor(page, () => window.loaded && window.bsub.state === 'subscribed' && window.jreplies[1], null, 'both subscribed');
  assert.equal(await page.evaluate(() => window.bc.transportName), 'websocket');

  // The SDK client publishes JSON, then bytes.
  const offsets = await page.evaluate(async () => {
    const a = await bc.publish('bin', { price: 101.5, sym: 'ACME' });
    const b = await bc.publish('bin', new Uint8Array([0, 1, 2, 254, 255]));
    return [a.offset, b.offset];
  });
  assert.deepEqual(offsets, [1, 2]);
  await waitFor(page, () => window.bgot.length >= 2 && window.jgot.length >= 2, null, 'two publications on both clients');
  let { bgot, jgot } = await page.evaluate(() => ({ bgot: window.bgot, jgot: window.jgot }));
  assert.deepEqual(bgot, [
    { offset: 1, data: { price: 101.5, sym: 'ACME' } },
    { offset: 2, data: { bytes: [0, 1, 2, 254, 255] } },
  ]);
  assert.deepEqual(jgot, [
    { channel: 'bin', data: { price: 101.5, sym: 'ACME' }, offset: 1 },
    { channel: 'bin', data: { $binary: 'AAEC/v8=' }, offset: 2 },
  ]);

  // The JSON client publishes bytes in their JSON form: bytes for the binary client.
  await page.evaluate(() => window.jws.send(JSON.stringify({ id: 2, command: 'publish', channel: 'bin', data: { $binary: '3q2+7w==' } })));
  await waitFor(page, () => window.bgot.length >= 3, null, 'the JSON client\'s bytes');
  bgot = await page.evaluate(() => window.bgot);
  assert.deepEqual(bgot[2], { offset: 3, data: { bytes: [0xde, 0xad, 0xbe, 0xef] } });

  // History over the binary protocol carries the bytes as bytes.
  const hist = await page.evaluate(async () => {
    const h = await bc.history('bin', { limit: 10 });
    return h.publications.map((p) => (p.data instanceof Uint8Array ? { bytes: Array.from(p.data) } : p.data));
  });
  assert.deepEqual(hist, [{ price: 101.5, sym: 'ACME' }, { bytes: [0, 1, 2, 254, 255] }, { bytes: [0xde, 0xad, 0xbe, 0xef] }]);

  // A bad command gets its error over the binary protocol.
  const err = await page.evaluate(() => bc.publish('bad name', 1, { ephemeral: true }).then(() => 'ok', (e) => e.code));
  assert.equal(err, 422);

  // The API's JSON publication reaches the binary client as JSON.
  const res = await fetch(`${srv.url}api/publish`, {
    method: 'POST',
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel: 'bin', data: 'from the API' }),
    signal: AbortSignal.timeout(WAIT),
  });
  assert.equal(res.status, 200);
  await waitFor(page, () => window.bgot.length >= 4, null, 'the API publication');
  assert.deepEqual((await page.evaluate(() => window.bgot))[3], { offset: 4, data: 'from the API' });
  assert.deepEqual(errors, []);
  // Binary frames: the SDK's connect, subscribe, 3 publishes... and text
  // ones from the JSON WebSocket.
  assert.ok(frames.binary >= 10 && frames.text >= 6, JSON.stringify(frames));
  await page.close();
});

test('binary protocol through the shared connection (SharedWorker): bytes published and received', { timeout: TEST_TIMEOUT }, async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  const html = `<!doctype html><meta charset="utf-8"><title>binary shared</title>
<script type="module">
import * as SB from '/sdk/switchboard.js';
window.got = [];
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), { protocol: 'protobuf', transports: ['websocket'] });
window.sub = c.subscribe('bin-shared', { onPublication: (p) => got.push(p.data instanceof Uint8Array ? { bytes: Array.from(p.data) } : p.data) });
window.loaded = true;
</script>`;
  await page.route(`${srv.url}binary-shared.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.goto(`${srv.url}binary-shared.html`, { timeout: WAIT });
  await waitFor(page, () => window.loaded && window.sub.state === 'subscribed', null, 'subscribed');
  await page.evaluate(async () => {
    await c.publish('bin-shared', new Uint8Array([7, 8, 9]));
    await c.publish('bin-shared', { n: 1 });
  });
  await waitFor(page, () => window.got.length >= 2, null, 'two publications');
  const { got, mode } = await page.evaluate(() => ({ got: window.got, mode: window.c.shared?.mode }));
  assert.deepEqual(got, [{ bytes: [7, 8, 9] }, { n: 1 }]);
  console.log(`# shared connection mode: ${mode}`);
  assert.deepEqual(errors, []);
  await page.close();
});
