// Browser tests of the TypeScript SDK (sdk/js), as served by the server at
// /sdk/switchboard.js, in headless Chromium against the real switchboard
// binary: connection cuts during a stream, the fallback from WebSocket to
// SSE to long polling, the durable outbox across an offline reload, and
// token refresh.
//
// The test page is a blank page on the server's origin (served by the
// browser's request routing, so that it also loads while offline); it
// imports the SDK from the server. Every wait is bounded; nothing is timed.
//
// E2E_VERBOSE=1 shows the server's log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as harness from './harness.js';

const API_KEY = 'e2e-sdk-key';
const JWT_SECRET = 'e2e-sdk-secret-0123456789abcdef';
const { BUILD_TIMEOUT } = harness;
const WAIT = 30_000; // bound of every wait for a condition
const TEST_TIMEOUT = 180_000;
const bundlePath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../web/sdk/switchboard.js');

let tmpDir;
let bin;
let context;
const servers = [];

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-sdk-'));
  bin = await harness.binary(tmpDir);
  context = await harness.launchBrowser(tmpDir);
}, { timeout: BUILD_TIMEOUT + 30_000 });

after(async () => {
  await context?.close().catch(() => {});
  await Promise.all(servers.map((s) => harness.stopServer(s)));
  harness.killAll();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// start runs a server on a free port. The history holds the whole stream
// of a test, so that a slow machine cannot turn a cut into an honest
// "unrecovered" and fail the exactly-once checks for the wrong reason.
async function start(extra = []) {
  const srv = await harness.startServer(bin, '127.0.0.1:0', API_KEY, ['--history-size', '2000', ...extra]);
  servers.push(srv);
  // The test pages come from the browser's request routing, which gives
  // them no address; Chromium's Local Network Access checks then treat
  // them as public pages reaching a loopback server, unless allowed.
  await context.grantPermissions(['local-network-access'], { origin: srv.url.slice(0, -1) });
  return srv;
}

async function api(srv, method, body) {
  const res = await fetch(`${srv.url}api/${method}`, {
    method: 'POST',
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) };
}

async function publish(srv, channel, data) {
  const r = await api(srv, 'publish', { channel, data });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.result.offset;
}

// openPage opens the blank test page on srv's origin, with the SDK
// imported as window.SB. routeSDK also serves the SDK from the committed
// bundle (the very bytes the server embeds), so that a reload works offline.
// noSharedWorker removes SharedWorker from the page: sharedConnection then
// takes its Web Locks way, where a tab (the leader) holds the connection.
// Tests that cut the network with context.setOffline, or block a
// transport in the page, need that: Playwright's network emulation and
// routing reach the page, not a SharedWorker.
async function openPage(srv, { routeSDK = false, init, noSharedWorker = false } = {}) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  page.sockets = 0;
  page.on('websocket', () => page.sockets++);
  if (noSharedWorker) await page.addInitScript(() => delete window.SharedWorker);
  const html = `<!doctype html><meta charset="utf-8"><title>sdk test</title>
<script type="module">
import * as SB from '/sdk/switchboard.js';
window.SB = SB;
${init ?? ''}
window.sdkLoaded = true;
</script>`;
  await page.route(`${srv.url}sdk-test.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: html }));
  if (routeSDK) {
    const js = fs.readFileSync(bundlePath);
    await page.route(`${srv.url}sdk/switchboard.js`, (r) => r.fulfill({ status: 200, contentType: 'text/javascript', body: js }));
  }
  await page.goto(`${srv.url}sdk-test.html`, { timeout: WAIT });
  await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
  return page;
}

// The script each page runs to set up a client: window.c (the client),
// window.got (publication data received, in order), window.gaps, window.states.
const recorder = (channel, opts) => `
window.got = []; window.gaps = []; window.states = []; window.tokens = 0;
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), ${opts});
c.on('state', (e) => states.push({ state: e.state, transport: e.transport, code: e.code ?? 0 }));
window.sub = c.subscribe(${JSON.stringify(channel)}, {
  onPublication: (p) => got.push(p.data),
  onGap: (g) => gaps.push(g),
});
`;

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 20 });
  } catch (err) {
    const snap = await page
      .evaluate(() => ({ got: window.got?.length, gaps: window.gaps, state: window.c?.state, transport: window.c?.transportName, outbox: window.c?.outbox?.length, sharing: window.c?.shared && { mode: window.c.shared.mode, leader: window.c.shared.leader } }))
      .catch(() => ({}));
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(snap)}`, { cause: err });
  }
}

// tally compares what a page received with 0..n-1: lost, duplicated, out of order.
function tally(got, n) {
  const seen = new Map();
  for (const d of got) seen.set(d, (seen.get(d) ?? 0) + 1);
  let lost = 0;
  let dup = 0;
  for (let i = 0; i < n; i++) {
    const k = seen.get(i) ?? 0;
    if (k === 0) lost++;
    if (k > 1) dup += k - 1;
  }
  let disorder = 0;
  for (let i = 1; i < got.length; i++) if (got[i] < got[i - 1]) disorder++;
  return { received: got.length, lost, dup, disorder };
}

// cutAfter waits until the page is connected with a client id other than
// `prev`, then disconnects it through the server API (close 4003, or the
// end of the SSE stream).
async function cut(srv, page, prev) {
  await waitFor(page, (p) => window.c.state === 'connected' && window.c.clientId && window.c.clientId !== p && window.sub.state === 'subscribed', prev, 'a new connection');
  const id = await page.evaluate(() => window.c.clientId);
  const r = await api(srv, 'disconnect', { client: id, reconnect: true });
  // A client that left between the read and the call is fine (404).
  assert.ok(r.status === 200 || r.status === 404, JSON.stringify(r.body));
  return id;
}

test('50 connection cuts during a stream of 500 publications: all delivered, in order, none twice', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start();
  const page = await openPage(srv, { init: recorder('stream', `{ transports: ['websocket'], backoff: { base: 50, max: 400 } }`) });
  await waitFor(page, () => window.sub.state === 'subscribed', null, 'subscribed');
  const N = 500;
  const CUTS = 50;
  let published = 0;
  const publisher = (async () => {
    for (; published < N; published++) await publish(srv, 'stream', published);
  })();
  let prev = null;
  let cuts = 0;
  for (; cuts < CUTS; cuts++) {
    // Spread the cuts over the stream.
    const deadline = Date.now() + WAIT;
    while (published < ((cuts + 1) * N) / (CUTS + 1)) {
      assert.ok(Date.now() < deadline, `the publisher is stuck at ${published}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    prev = await cut(srv, page, prev);
  }
  await publisher;
  await waitFor(page, (n) => window.got.length >= n, N, `${N} publications`);
  const { got, gaps, errors } = await page.evaluate(() => ({ got: window.got, gaps: window.gaps, errors: [] }));
  const t = tally(got, N);
  console.log(`# websocket: cuts=${cuts} published=${N} received=${t.received} lost=${t.lost} duplicated=${t.dup} out-of-order=${t.disorder} gaps=${gaps.length}`);
  assert.deepEqual(t, { received: N, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(gaps, []);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('WebSocket blocked: falls back to SSE, then to long polling, recovering across cuts', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start();
  // The page's WebSocket fails to open; EventSource fails once told to.
  const p2 = await openFallbackPage(srv);
  await waitFor(p2, () => window.sub.state === 'subscribed', null, 'subscribed');
  await waitFor(p2, () => window.c.transportName === 'sse' && window.c.state === 'connected', null, 'SSE');

  // Over SSE: 5 cuts during 100 publications; each new stream starts every
  // channel from its position (since).
  let n = 0;
  let prev = null;
  for (let k = 0; k < 5; k++) {
    for (let i = 0; i < 20; i++) await publish(srv, 'fb', n++);
    prev = await cut(srv, p2, prev);
  }
  // A second subscription during the stream re-opens it (EventSource
  // cannot change its channels): the first channel must not skip.
  await addSubscriptionDuring(srv, p2, 'fb2', async () => {
    for (let i = 0; i < 30; i++) await publish(srv, 'fb', n++);
  });
  await waitFor(p2, (m) => window.got.length >= m, n, `${n} publications over SSE`);

  // SSE now fails too: the next cut sends the client to long polling.
  await waitFor(p2, (p) => window.c.state === 'connected' && window.c.clientId && window.c.clientId !== p, prev, 'the last SSE stream');
  await p2.evaluate(() => (window.blockSSE = true));
  await cut(srv, p2, prev);
  await waitFor(p2, () => window.c.transportName === 'poll' && window.c.state === 'connected', null, 'long polling');
  await waitFor(p2, () => window.sub.state === 'subscribed', null, 'subscribed over long polling');

  // A new channel list while polling: the next poll starts every channel
  // from its position.
  await addSubscriptionDuring(srv, p2, 'fb3', async () => {
    for (let i = 0; i < 30; i++) await publish(srv, 'fb', n++);
  });
  // Over long polling: requests fail for a while (the positions resume).
  for (let k = 0; k < 5; k++) {
    await p2.route('**/poll?**', (r) => r.abort('connectionreset'));
    for (let i = 0; i < 10; i++) await publish(srv, 'fb', n++);
    await p2.unroute('**/poll?**');
    for (let i = 0; i < 10; i++) await publish(srv, 'fb', n++);
    await waitFor(p2, (m) => window.got.length >= m, n, `${n} publications over long polling`);
  }
  const { got, gaps, states } = await p2.evaluate(() => ({ got: window.got, gaps: window.gaps, states: window.states }));
  const t = tally(got, n);
  const used = [...new Set(states.filter((s) => s.state === 'connected').map((s) => s.transport))];
  console.log(`# fallback: transports=${used.join('>')} published=${n} received=${t.received} lost=${t.lost} duplicated=${t.dup} out-of-order=${t.disorder} gaps=${gaps.length}`);
  assert.deepEqual(used, ['sse', 'poll']);
  assert.deepEqual(t, { received: n, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(gaps, []);
  // Publishing goes over HTTP on both.
  const ack = await p2.evaluate(() => window.c.publish('fb', 'from the page'));
  assert.equal(ack.offset, n + 1);
  // So do history and presence (GET /history, /presence, /presence_stats).
  const h = await p2.evaluate(() => window.c.history('fb', { limit: 2, reverse: true }));
  assert.deepEqual(h.publications.map((p) => p.data), ['from the page', n - 1]);
  const since = await p2.evaluate((e) => window.c.history('fb', { since: { offset: 1, epoch: e } }), h.epoch);
  assert.equal(since.publications.length, n);
  const pr = await p2.evaluate(() => window.c.presence('fb'));
  assert.ok(Array.isArray(pr.clients) && pr.num_clients === pr.clients.length, JSON.stringify(pr));
  const st = await p2.evaluate(() => window.c.presenceStats('fb'));
  assert.equal(typeof st.num_clients, 'number');
  await assert.rejects(p2.evaluate(() => window.c.history('nope:x')), /422/);
  await p2.close();
});

// addSubscriptionDuring subscribes the page to channel while publish runs.
async function addSubscriptionDuring(srv, page, channel, publishing) {
  const running = publishing();
  await new Promise((r) => setTimeout(r, 20)); // let the stream get going
  await page.evaluate((ch) => {
    window.extra = window.extra || {};
    window.extra[ch] = window.c.subscribe(ch, { onGap: (g) => window.gaps.push(g) });
  }, channel);
  await running;
  await waitFor(page, (ch) => window.extra[ch].state === 'subscribed', channel, `subscribed to ${channel}`);
}

// openFallbackPage is openPage with WebSocket blocked and EventSource
// blockable (window.blockSSE).
async function openFallbackPage(srv) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  await page.addInitScript(() => {
    // The page's own WebSocket and EventSource are blocked: the connection
    // must be the page's (the Web Locks way of sharedConnection), not a
    // SharedWorker's, which has its own.
    delete window.SharedWorker;
    window.WebSocket = class {
      constructor() {
        throw new DOMException('WebSocket blocked by the test', 'SecurityError');
      }
    };
    const RealES = window.EventSource;
    window.EventSource = class extends RealES {
      constructor(url, opts) {
        if (window.blockSSE) throw new DOMException('EventSource blocked by the test', 'SecurityError');
        super(url, opts);
      }
    };
  });
  const html = `<!doctype html><script type="module">
import * as SB from '/sdk/switchboard.js';
window.SB = SB;
${recorder('fb', `{ backoff: { base: 50, max: 400 }, upgradeAfter: 3600000 }`)}
window.sdkLoaded = true;
</script>`;
  await page.route(`${srv.url}sdk-fallback.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.goto(`${srv.url}sdk-fallback.html`, { timeout: WAIT });
  await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
  return page;
}

// storedCount counts the outbox entries in the page's IndexedDB (run in the page).
const storedCount = () =>
  new Promise((resolve, reject) => {
    const open = indexedDB.open('switchboard-outbox');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      if (!db.objectStoreNames.contains('entries')) return resolve(0);
      const r = db.transaction('entries').objectStore('entries').count();
      r.onsuccess = () => {
        db.close();
        resolve(r.result);
      };
    };
  });

// waitForStored waits until the page's IndexedDB holds n outbox entries
// (polled from here: waitForFunction does not wait for a promise).
async function waitForStored(page, n) {
  const deadline = Date.now() + WAIT;
  let have;
  while ((have = await page.evaluate((fn) => eval(fn)(), storedCount.toString())) !== n) {
    assert.ok(Date.now() < deadline, `want ${n} entries in IndexedDB, have ${have}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('20 publishes while offline survive a reload and are delivered once each, in order', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start();
  const init = recorder('outbox', `{ transports: ['websocket'], backoff: { base: 50, max: 400 } }`);
  // setOffline must cut the connection: the page holds it (see openPage).
  const page = await openPage(srv, { routeSDK: true, init, noSharedWorker: true });
  await waitFor(page, () => window.sub.state === 'subscribed', null, 'subscribed');
  await context.setOffline(true);
  try {
    await waitFor(page, () => window.c.state === 'disconnected', null, 'disconnected');
    await page.evaluate(() => {
      for (let i = 0; i < 20; i++) window.c.publish('outbox', i).catch(() => {});
    });
    // Wait until IndexedDB holds all 20 (the outbox writes each before sending).
    await waitForStored(page, 20);
    assert.deepEqual(await page.evaluate(() => window.c.outbox.map((e) => e.state)), Array(20).fill('queued'));
    await page.reload({ timeout: WAIT }); // still offline
    await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
    await waitFor(page, () => window.c.outbox.length === 20, null, 'the outbox loaded from IndexedDB');
  } finally {
    await context.setOffline(false);
  }
  await waitFor(page, () => window.c.state === 'connected' && window.c.outbox.length === 0, null, 'the outbox sent');
  const h = await api(srv, 'history', { channel: 'outbox' });
  const data = h.body.result.publications.map((p) => p.data);
  const t = tally(data, 20);
  console.log(`# outbox: published-offline=20 in-history=${data.length} lost=${t.lost} duplicated=${t.dup} out-of-order=${t.disorder}`);
  assert.deepEqual(data, Array.from({ length: 20 }, (_, i) => i));
  // The reloaded page's subscription recovered them from its new position.
  await page.close();
});

test('publishes whose connection is cut while they are in flight are published once each, in order', { timeout: TEST_TIMEOUT }, async () => {
  // A publication whose answer was lost in a cut is sent again with its
  // key; the server publishes it once.
  const srv = await start();
  const page = await openPage(srv, { init: recorder('inflight', `{ transports: ['websocket'], backoff: { base: 20, max: 200 }, outbox: false }`) });
  await waitFor(page, () => window.sub.state === 'subscribed', null, 'subscribed');
  const N = 300;
  await page.evaluate((n) => {
    window.acks = [];
    for (let i = 0; i < n; i++) window.c.publish('inflight', i).then((a) => window.acks.push(a.offset));
  }, N);
  let prev = null;
  let cuts = 0;
  for (; cuts < 20; cuts++) {
    if ((await page.evaluate(() => window.c.outbox.length)) === 0) break;
    prev = await cut(srv, page, prev);
  }
  await waitFor(page, (n) => window.c.outbox.length === 0 && window.got.length >= n, N, 'the outbox sent and delivered');
  const h = await api(srv, 'history', { channel: 'inflight', limit: 1000 });
  const data = h.body.result.publications.map((p) => p.data);
  const tl = tally(data, N);
  const got = await page.evaluate(() => window.got);
  console.log(`# in-flight: cuts=${cuts} published=${N} in-history=${data.length} lost=${tl.lost} duplicated=${tl.dup} out-of-order=${tl.disorder}`);
  assert.ok(cuts > 0, 'the outbox was sent before any cut');
  assert.deepEqual(data, Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(got, data);
  await page.close();
});

// mint signs an HS256 connection token with Node's crypto.
function mint(sub, ttlSeconds) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, iat: now, exp: now + ttlSeconds })}`;
  const sig = crypto.createHmac('sha256', JWT_SECRET).update(head).digest('base64url');
  return `${head}.${sig}`;
}

for (const transport of ['websocket', 'sse']) {
  test(`an expiring token is refreshed through getToken without a dropped publication (${transport})`, { timeout: TEST_TIMEOUT }, async () => {
    const srv = await start(['--jwt-secret', JWT_SECRET, '--allow-anonymous=false']);
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(err));
    let minted = 0;
    await page.exposeFunction('mintToken', () => {
      minted++;
      return mint('alice', 3);
    });
    await page.route(`${srv.url}sdk-token.html`, (r) =>
      r.fulfill({
        status: 200,
        contentType: 'text/html',
        body: `<!doctype html><script type="module">
import * as SB from '/sdk/switchboard.js';
window.SB = SB;
${recorder('tok', `{ transports: [${JSON.stringify(transport)}], getToken: () => window.mintToken(), backoff: { base: 50, max: 400 } }`)}
window.sdkLoaded = true;
</script>`,
      }),
    );
    await page.goto(`${srv.url}sdk-token.html`, { timeout: WAIT });
    await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
    await waitFor(page, () => window.sub.state === 'subscribed', null, 'subscribed');
    // Publish for about four token lifetimes.
    const N = 300;
    for (let i = 0; i < N; i++) {
      await publish(srv, 'tok', i);
      await new Promise((r) => setTimeout(r, 40));
    }
    await waitFor(page, (n) => window.got.length >= n, N, `${N} publications`);
    const { got, gaps, states } = await page.evaluate(() => ({ got: window.got, gaps: window.gaps, states: window.states }));
    const t = tally(got, N);
    const expired = states.filter((s) => s.code === 4005).length;
    console.log(`# token (${transport}): tokens=${minted} published=${N} received=${t.received} lost=${t.lost} duplicated=${t.dup} closed-4005=${expired}`);
    assert.ok(minted >= 4, `only ${minted} tokens minted`);
    assert.deepEqual(t, { received: N, lost: 0, dup: 0, disorder: 0 });
    assert.deepEqual(gaps, []);
    if (transport === 'websocket') {
      assert.equal(expired, 0, 'the connection expired instead of being refreshed');
      assert.equal(states.filter((s) => s.state === 'connected').length, 1, 'refresh went over the same connection');
    }
    await page.close();
  });
}

// info reads the server's /api/info (GET, with the API key).
async function info(srv) {
  const res = await fetch(`${srv.url}api/info`, { headers: { Authorization: `apikey ${API_KEY}` }, signal: AbortSignal.timeout(WAIT) });
  assert.equal(res.status, 200);
  return (await res.json()).result;
}

// connections waits until the server counts want connections and returns the count.
async function connections(srv, want) {
  const deadline = Date.now() + WAIT;
  let n;
  while ((n = (await info(srv)).connections) !== want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return n;
}

test('sharedConnection without SharedWorker (Web Locks): two tabs, one server connection; the leader tab closes mid-stream and the other goes on without a gap or duplicate', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start();
  const init = `
window.offsets = []; window.gaps = [];
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), { backoff: { base: 50, max: 400 } });
window.sub = c.subscribe('shared', { onPublication: (p) => offsets.push(p.offset), onGap: (g) => gaps.push(g) });
`;
  const a = await openPage(srv, { init, noSharedWorker: true });
  await waitFor(a, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'tab A subscribed');
  const b = await openPage(srv, { init, noSharedWorker: true });
  await waitFor(b, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'tab B subscribed');
  const before = await connections(srv, 1);
  assert.equal(before, 1, 'one connection for two tabs');
  const idA = await a.evaluate(() => window.c.clientId);
  assert.ok(idA);
  assert.equal(await b.evaluate(() => window.c.clientId), idA, 'tab B uses tab A\'s connection');
  assert.equal(a.sockets + b.sockets, 1, 'the leader tab holds the WebSocket');
  // A follower's publish goes through the leader's connection.
  const ack = await b.evaluate(() => window.c.publish('shared-other', 'from B'));
  assert.equal(ack.offset, 1);

  const N = 400;
  const HANDOVER = 200;
  for (let i = 0; i < HANDOVER; i++) await publish(srv, 'shared', i);
  await waitFor(a, (n) => window.offsets.length >= n, HANDOVER, `tab A got ${HANDOVER}`);
  const gotA = await a.evaluate(() => window.offsets);
  // Close the leader while the stream goes on.
  let published = HANDOVER;
  const publisher = (async () => {
    for (; published < N; published++) await publish(srv, 'shared', published);
  })();
  while (published < HANDOVER + 20) await new Promise((r) => setTimeout(r, 2));
  await a.close();
  await publisher;
  await waitFor(b, (n) => window.offsets.length >= n, N, `tab B got ${N}`);
  const after = await connections(srv, 1);
  await waitFor(b, (id) => window.c.state === 'connected' && window.c.clientId && window.c.clientId !== id, idA, 'tab B on its own connection');
  const { offsets, gaps, dropped } = await b.evaluate(() => ({ offsets: window.offsets, gaps: window.gaps, dropped: window.sub.duplicates }));
  const tb = tally(offsets.map((o) => o - 1), N);
  const ta = tally(gotA.map((o) => o - 1), HANDOVER);
  console.log(`# shared: connections=${before} (after hand-over ${after}) published=${N} tabA(leader, closed after ${HANDOVER}): received=${ta.received} lost=${ta.lost} duplicated=${ta.dup} tabB: received=${tb.received} lost=${tb.lost} duplicated=${tb.dup} out-of-order=${tb.disorder} gaps=${gaps.length} (dropped as already delivered: ${dropped})`);
  assert.deepEqual(ta, { received: HANDOVER, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(tb, { received: N, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(gaps, []);
  assert.equal(after, 1);
  assert.deepEqual(b.errors, []);
  await b.close();
});

// publishOnce publishes with an idempotency key through the server API,
// retrying while the server is away (restarting) or answers 503, as a
// backend would: the key makes a retry of a publication that did land
// harmless.
async function publishOnce(holder, channel, data, key) {
  const deadline = Date.now() + 2 * WAIT;
  for (;;) {
    try {
      const res = await fetch(`${holder.srv.url}api/publish`, {
        method: 'POST',
        headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel, data, idempotency_key: key }),
        signal: AbortSignal.timeout(WAIT),
      });
      const body = await res.json();
      if (res.status === 200) return body.result.offset;
      assert.equal(res.status, 503, JSON.stringify(body));
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      // The server is restarting: try again.
    }
    assert.ok(Date.now() < deadline, `publication ${key} not accepted within ${2 * WAIT} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// connectedCount counts a page's "connected" state events.
const connectedCount = (page) => page.evaluate(() => window.states.filter((s) => s.state === 'connected').length);

test('50 mixed cuts (server API, offline, server restarts with Redis) during 500 publications: every page (websocket, sse, poll) receives all, in order, none twice', { timeout: 2 * TEST_TIMEOUT }, async () => {
  const redis = await harness.startRedis(tmpDir, WAIT);
  const port = await harness.freePort();
  const args = ['--history-size', '2000', '--broker', redis.url];
  const holder = { srv: await harness.startServer(bin, `127.0.0.1:${port}`, API_KEY, args) };
  servers.push(holder.srv);
  await context.grantPermissions(['local-network-access'], { origin: holder.srv.url.slice(0, -1) });
  const pages = {};
  try {
    for (const transport of ['websocket', 'sse', 'poll']) {
      // noSharedWorker: the test cuts the network with setOffline, which
      // reaches the page, not a SharedWorker.
      pages[transport] = await openPage(holder.srv, { noSharedWorker: true, init: recorder('mixed', `{ transports: ['${transport}'], backoff: { base: 50, max: 400 } }`) });
      await waitFor(pages[transport], () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, `${transport} subscribed`);
    }
    const N = 500;
    const CUTS = 50;
    let published = 0;
    // The publisher runs at most one slice ahead of the cuts, so that they
    // spread over the stream however long each takes.
    let allowed = 0;
    const publisher = (async () => {
      for (; published < N; published++) {
        const deadline = Date.now() + 4 * WAIT;
        while (published >= allowed) {
          assert.ok(Date.now() < deadline, `the cuts are stuck at ${published}`);
          await new Promise((r) => setTimeout(r, 2));
        }
        await publishOnce(holder, 'mixed', published, `mixed-${published}`);
      }
    })();
    const kinds = { disconnect: 0, offline: 0, restart: 0 };
    const log = (msg) => process.env.E2E_VERBOSE && fs.appendFileSync(path.join(os.tmpdir(), 'switchboard-e2e-mixed.log'), `${new Date().toISOString()} ${msg}\n`);
    for (let k = 0; k < CUTS; k++) {
      allowed = Math.ceil(((k + 2) * N) / (CUTS + 1));
      const deadline = Date.now() + 2 * WAIT;
      while (published < ((k + 1) * N) / (CUTS + 1)) {
        assert.ok(Date.now() < deadline, `the publisher is stuck at ${published}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      const kind = ['disconnect', 'offline', 'restart'][k % 3];
      kinds[kind]++;
      log(`cut ${k} ${kind} published=${published}`);
      // The pages whose connection this cut ends: they must come back.
      const cutPages = kind === 'disconnect' ? ['websocket', 'sse'] : ['websocket', 'sse', 'poll'];
      const before = {};
      for (const t of Object.keys(pages)) before[t] = await connectedCount(pages[t]);
      if (kind === 'disconnect') {
        for (const t of cutPages) {
          const id = await pages[t].evaluate(() => window.c.clientId);
          const r = await api(holder.srv, 'disconnect', { client: id, reconnect: true });
          assert.ok(r.status === 200 || r.status === 404, JSON.stringify(r.body));
        }
      } else if (kind === 'offline') {
        await context.setOffline(true);
        try {
          for (const t of cutPages) await waitFor(pages[t], () => window.c.state === 'disconnected', null, `${t} offline`);
          const until = Date.now() + WAIT;
          while (published < allowed && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
        } finally {
          await context.setOffline(false);
        }
      } else {
        await harness.stopServer(holder.srv);
        holder.srv = await harness.startServer(bin, `127.0.0.1:${port}`, API_KEY, args);
        servers.push(holder.srv);
      }
      log(`cut ${k} done`);
      for (const t of cutPages) {
        // A poll may miss a restart that happens between two requests.
        const must = !(kind === 'restart' && t === 'poll');
        await waitFor(
          pages[t],
          ([n, must]) => window.c.state === 'connected' && window.sub.state === 'subscribed' && (!must || window.states.filter((s) => s.state === 'connected').length > n),
          [before[t], must],
          `${t} back after cut ${k} (${kind})`,
        );
        log(`cut ${k} ${t} back`);
      }
    }
    allowed = N;
    await publisher;
    for (const [t, page] of Object.entries(pages)) {
      await waitFor(page, (n) => window.got.length >= n, N, `${N} publications on the ${t} page`);
      const { got, gaps, reconnects } = await page.evaluate(() => ({ got: window.got, gaps: window.gaps, reconnects: window.states.filter((s) => s.state === 'connected').length - 1 }));
      const tl = tally(got, N);
      console.log(`# mixed cuts (${t}): cuts=${CUTS} (disconnect=${kinds.disconnect} offline=${kinds.offline} restart=${kinds.restart}) reconnects=${reconnects} published=${N} received=${tl.received} lost=${tl.lost} duplicated=${tl.dup} out-of-order=${tl.disorder} gaps=${gaps.length}`);
      assert.deepEqual(tl, { received: N, lost: 0, dup: 0, disorder: 0 }, t);
      assert.deepEqual(gaps, [], t);
      assert.deepEqual(page.errors, [], t);
    }
  } finally {
    await context.setOffline(false);
    for (const page of Object.values(pages)) await page.close().catch(() => {});
    await harness.stopServer(holder.srv);
    await redis.stop();
  }
});

test('transport switches mid-stream: WebSocket blocked, to SSE, SSE blocked, to long polling, then back to WebSocket; every publication once, in order', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start();
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  // WebSocket and EventSource that the test can block (their constructors
  // throw, as when a proxy refuses them); what is open stays open until the
  // server cuts it.
  await page.addInitScript(() => {
    // The connection must be the page's (blocked below), not a SharedWorker's.
    delete window.SharedWorker;
    const RealWS = window.WebSocket;
    window.WebSocket = class extends RealWS {
      constructor(url, protocols) {
        if (window.blockWS) throw new DOMException('WebSocket blocked by the test', 'SecurityError');
        super(url, protocols);
      }
    };
    const RealES = window.EventSource;
    window.EventSource = class extends RealES {
      constructor(url, opts) {
        if (window.blockSSE) throw new DOMException('EventSource blocked by the test', 'SecurityError');
        super(url, opts);
      }
    };
  });
  const html = `<!doctype html><script type="module">
import * as SB from '/sdk/switchboard.js';
window.SB = SB;
${recorder('switch', `{ backoff: { base: 50, max: 400 }, upgradeAfter: 1000 }`)}
window.sdkLoaded = true;
</script>`;
  await page.route(`${srv.url}sdk-switch.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.goto(`${srv.url}sdk-switch.html`, { timeout: WAIT });
  await page.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
  await waitFor(page, () => window.sub.state === 'subscribed' && window.c.transportName === 'websocket' && window.c.state === 'connected', null, 'subscribed over WebSocket');

  const N = 400;
  let published = 0;
  const publisher = (async () => {
    for (; published < N; published++) await publish(srv, 'switch', published);
  })();
  const reach = async (n) => {
    const deadline = Date.now() + WAIT;
    while (published < n) {
      assert.ok(Date.now() < deadline, `the publisher is stuck at ${published}`);
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const cutNow = async () => {
    const id = await page.evaluate(() => window.c.clientId);
    const r = await api(srv, 'disconnect', { client: id, reconnect: true });
    assert.ok(r.status === 200 || r.status === 404, JSON.stringify(r.body));
  };
  await reach(80);
  await page.evaluate(() => (window.blockWS = true));
  await cutNow();
  await waitFor(page, () => window.c.transportName === 'sse' && window.c.state === 'connected' && window.sub.state === 'subscribed', null, 'on SSE');
  await reach(180);
  await page.evaluate(() => (window.blockSSE = true));
  await cutNow();
  await waitFor(page, () => window.c.transportName === 'poll' && window.c.state === 'connected' && window.sub.state === 'subscribed', null, 'on long polling');
  await reach(280);
  await page.evaluate(() => {
    window.blockWS = false;
    window.blockSSE = false;
  });
  await waitFor(page, () => window.c.transportName === 'websocket' && window.c.state === 'connected' && window.sub.state === 'subscribed', null, 'back on WebSocket');
  await publisher;
  await waitFor(page, (n) => window.got.length >= n, N, `${N} publications`);
  const { got, gaps, states } = await page.evaluate(() => ({ got: window.got, gaps: window.gaps, states: window.states }));
  const path_ = states.filter((s) => s.state === 'connected').map((s) => s.transport).filter((t, i, a) => i === 0 || a[i - 1] !== t);
  const tl = tally(got, N);
  console.log(`# transport switches: path=${path_.join('>')} published=${N} received=${tl.received} lost=${tl.lost} duplicated=${tl.dup} out-of-order=${tl.disorder} gaps=${gaps.length}`);
  assert.deepEqual(path_, ['websocket', 'sse', 'poll', 'websocket']);
  assert.deepEqual(tl, { received: N, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(gaps, []);
  assert.deepEqual(page.errors, []);
  await page.close();
});

// presenceClients reads how many clients the server counts on a channel.
async function presenceClients(srv, channel) {
  const r = await api(srv, 'presence_stats', { channel });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.result.num_clients;
}

test('sharedConnection with a SharedWorker: two tabs, one server connection held by the worker; the first tab closes mid-stream, its subscriptions are released, and the other goes on without a gap or duplicate', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start();
  const init = `
window.offsets = []; window.gaps = [];
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), { backoff: { base: 50, max: 400 } });
window.sub = c.subscribe('sw', { onPublication: (p) => offsets.push(p.offset), onGap: (g) => gaps.push(g) });
`;
  const a = await openPage(srv, { init });
  await waitFor(a, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'tab A subscribed');
  // A channel only tab A holds: released when A goes.
  await a.evaluate(() => window.c.subscribe('only-a').ready);
  const b = await openPage(srv, { init });
  await waitFor(b, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'tab B subscribed');
  assert.equal(await connections(srv, 1), 1, 'one connection for two tabs');
  const id = await a.evaluate(() => window.c.clientId);
  assert.ok(id);
  assert.equal(await b.evaluate(() => window.c.clientId), id, 'both tabs on the worker\'s connection');
  assert.equal(a.sockets + b.sockets, 0, 'no tab holds a WebSocket: the worker does');
  assert.equal(await presenceClients(srv, 'only-a'), 1);
  // A publish from any tab goes through the worker's connection.
  assert.equal((await b.evaluate(() => window.c.publish('sw-other', 'from B'))).offset, 1);
  assert.equal((await a.evaluate(() => window.c.publish('sw-other', 'from A'))).offset, 2);

  const N = 400;
  const CLOSE_AT = 200;
  for (let i = 0; i < CLOSE_AT; i++) await publish(srv, 'sw', i);
  await waitFor(a, (n) => window.offsets.length >= n, CLOSE_AT, `tab A got ${CLOSE_AT}`);
  const gotA = await a.evaluate(() => window.offsets);
  let published = CLOSE_AT;
  const publisher = (async () => {
    for (; published < N; published++) await publish(srv, 'sw', published);
  })();
  while (published < CLOSE_AT + 20) await new Promise((r) => setTimeout(r, 2));
  await a.close();
  await publisher;
  await waitFor(b, (n) => window.offsets.length >= n, N, `tab B got ${N}`);
  // The worker learns that A is gone (its Web Lock is released) and drops
  // the subscriptions only A held.
  const deadline = Date.now() + WAIT;
  let left;
  while ((left = await presenceClients(srv, 'only-a')) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const { offsets, gaps, clientId } = await b.evaluate(() => ({ offsets: window.offsets, gaps: window.gaps, clientId: window.c.clientId }));
  const tb = tally(offsets.map((o) => o - 1), N);
  const ta = tally(gotA.map((o) => o - 1), CLOSE_AT);
  console.log(`# shared (SharedWorker): connections=1 published=${N} tabA(closed after ${CLOSE_AT}): received=${ta.received} lost=${ta.lost} duplicated=${ta.dup} tabB: received=${tb.received} lost=${tb.lost} duplicated=${tb.dup} out-of-order=${tb.disorder} gaps=${gaps.length}`);
  assert.deepEqual(ta, { received: CLOSE_AT, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(tb, { received: N, lost: 0, dup: 0, disorder: 0 });
  assert.deepEqual(gaps, []);
  assert.equal(clientId, id, 'the connection outlived the tab that started the worker');
  assert.equal(left, 0, 'the closed tab\'s subscription was released');
  assert.equal(await connections(srv, 1), 1);
  assert.deepEqual(b.errors, []);
  await b.close();
});

test('sharedConnection: a follower tab publishes while offline, the leader tab closes, the follower reloads: every publication delivered once, in order', { timeout: TEST_TIMEOUT }, async () => {
  // The Web Locks way (see openPage): the network of the tabs is cut.
  const srv = await start();
  const init = recorder('follow', `{ transports: ['websocket'], backoff: { base: 50, max: 400 } }`);
  const a = await openPage(srv, { routeSDK: true, init, noSharedWorker: true });
  await waitFor(a, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'tab A (leader) subscribed');
  const b = await openPage(srv, { routeSDK: true, init, noSharedWorker: true });
  await waitFor(b, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'tab B (follower) subscribed');
  assert.equal(a.sockets, 1, 'A leads');
  assert.equal(b.sockets, 0, 'B follows');
  const N = 20;
  await context.setOffline(true);
  try {
    await waitFor(b, () => window.c.state === 'disconnected', null, 'B disconnected');
    await b.evaluate((n) => {
      for (let i = 0; i < n; i++) window.c.publish('follow', i).catch(() => {});
    }, N);
    // The follower stores each publish before handing it to the leader.
    await waitForStored(b, N);
    await waitFor(a, (n) => window.c.outbox.length === n, N, 'the leader queued them');
    await a.close(); // the leader goes before it could send
    await b.reload({ timeout: WAIT }); // still offline
    await b.waitForFunction(() => window.sdkLoaded === true, null, { timeout: WAIT });
    await waitFor(b, (n) => window.c.outbox.length === n, N, 'the new leader took the outbox from IndexedDB');
  } finally {
    await context.setOffline(false);
  }
  await waitFor(b, (n) => window.c.state === 'connected' && window.c.outbox.length === 0 && window.got.length >= n, N, 'the outbox sent and delivered');
  const h = await api(srv, 'history', { channel: 'follow' });
  const data = h.body.result.publications.map((p) => p.data);
  const got = await b.evaluate(() => window.got);
  const t = tally(data, N);
  console.log(`# follower outbox: published-offline=${N} in-history=${data.length} lost=${t.lost} duplicated=${t.dup} out-of-order=${t.disorder}`);
  assert.deepEqual(data, Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(got, data);
  assert.deepEqual(b.errors, []);
  await b.close();
});

test('sharedConnection never crosses identities: tabs of two users in one browser get one connection each, tabs of one user share', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start(['--jwt-secret', JWT_SECRET, '--allow-anonymous=false']);
  const tab = async (user, ttl) => {
    const init = `
window.got = [];
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), { token: ${JSON.stringify(mint(user, ttl))} });
window.sub = c.subscribe('who', { onPublication: (p) => got.push(p.data) });
`;
    const page = await openPage(srv, { init });
    await waitFor(page, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, `${user}'s tab subscribed`);
    return page;
  };
  const alice1 = await tab('alice', 600);
  const bob = await tab('bob', 600);
  const alice2 = await tab('alice', 900); // another token of alice: the same identity
  assert.equal(await connections(srv, 2), 2, 'one connection per user');
  const [a1, a2, b] = await Promise.all([alice1, alice2, bob].map((p) => p.evaluate(() => window.c.clientId)));
  assert.equal(a1, a2, 'alice\'s tabs share');
  assert.notEqual(a1, b, 'bob has his own');
  const users = (await api(srv, 'presence', { channel: 'who' })).body.result.clients.map((c) => c.user).sort();
  assert.deepEqual(users, ['alice', 'bob']);
  await publish(srv, 'who', 'hello');
  for (const p of [alice1, alice2, bob]) await waitFor(p, () => window.got.length === 1, null, 'the publication');
  for (const p of [alice1, alice2, bob]) await p.close();
});

test('sharedConnection with a SharedWorker: publishes made while the server is down survive the tabs (and their worker) closing, and the next tab\'s worker sends them once each, in order', { timeout: TEST_TIMEOUT }, async () => {
  let srv = await start();
  const init = recorder('sw-out', `{ transports: ['websocket'], backoff: { base: 50, max: 400 } }`);
  const a = await openPage(srv, { init });
  const b = await openPage(srv, { init });
  for (const p of [a, b]) await waitFor(p, () => window.sub.state === 'subscribed' && window.c.state === 'connected', null, 'subscribed');
  assert.equal(a.sockets + b.sockets, 0, 'the worker holds the connection');
  // The server goes away; the network emulation would not reach the worker.
  await harness.stopServer(srv);
  for (const p of [a, b]) await waitFor(p, () => window.c.state !== 'connected', null, 'disconnected');
  const N = 20;
  await b.evaluate((n) => {
    for (let i = 0; i < n; i++) window.c.publish('sw-out', i).catch(() => {});
  }, N);
  await waitForStored(b, N);
  await waitFor(a, (n) => window.c.outbox.length === n, N, 'the worker queued them (tab A sees its outbox)');
  await a.close();
  await b.close(); // the last tab: the browser stops the worker
  srv = await harness.startServer(bin, srv.addr, API_KEY, ['--history-size', '2000']);
  servers.push(srv);
  const c = await openPage(srv, { init });
  await waitFor(c, (n) => window.c.state === 'connected' && window.c.outbox.length === 0 && window.got.length >= n, N, 'the stored publishes sent and delivered');
  const h = await api(srv, 'history', { channel: 'sw-out' });
  const data = h.body.result.publications.map((p) => p.data);
  const got = await c.evaluate(() => window.got);
  const t = tally(data, N);
  console.log(`# SharedWorker outbox: published-while-down=${N} in-history=${data.length} lost=${t.lost} duplicated=${t.dup} out-of-order=${t.disorder}`);
  assert.deepEqual(data, Array.from({ length: N }, (_, i) => i));
  assert.deepEqual(got, data);
  assert.equal(c.sockets, 0, 'sent by a worker');
  assert.deepEqual(c.errors, []);
  await c.close();
});

test('a server-side subscription (POST /api/subscribe for a user) reaches both tabs of the shared connection, survives a cut with recovery, and ends with POST /api/unsubscribe', { timeout: TEST_TIMEOUT }, async () => {
  const srv = await start(['--jwt-secret', JWT_SECRET]);
  const token = mint('carol', 3600);
  const init = `
window.got = []; window.events = [];
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), { token: ${JSON.stringify(token)}, backoff: { base: 50, max: 400 } });
c.on('subscribed', (e) => events.push('subscribed ' + e.channel + ' ' + JSON.stringify(e.data) + ' ' + e.subscription.server));
c.on('publication', (p) => got.push(p.data));
c.on('unsubscribed', (e) => events.push('unsubscribed ' + e.channel + ' ' + e.code));
`;
  const a = await openPage(srv, { init });
  const b = await openPage(srv, { init });
  for (const p of [a, b]) await waitFor(p, () => window.c.state === 'connected', null, 'connected');
  let r = await api(srv, 'subscribe', { user: 'carol', channel: 'feed', data: { why: 'invited' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.result.connections, 1, 'one connection: the worker holds it for both tabs');
  for (const p of [a, b]) await waitFor(p, () => window.events.length === 1, null, 'the subscribed event');
  const N = 40;
  for (let i = 0; i < N / 2; i++) await publish(srv, 'feed', i);
  await waitFor(a, (n) => window.got.length >= n, N / 2, 'the first half');
  r = await api(srv, 'disconnect', { user: 'carol', reconnect: true });
  assert.equal(r.status, 200);
  for (let i = N / 2; i < N; i++) await publish(srv, 'feed', i);
  for (const p of [a, b]) await waitFor(p, (n) => window.got.length >= n, N, `all ${N}`);
  for (const p of [a, b]) await waitFor(p, () => window.c.state === 'connected' && window.c.clientId, null, 'connected again');
  r = await api(srv, 'unsubscribe', { user: 'carol', channel: 'feed' });
  assert.equal(r.body.result.connections, 1, JSON.stringify(r.body));
  for (const p of [a, b]) await waitFor(p, () => window.events.length === 2, null, 'the unsubscribed event');
  for (const p of [a, b]) {
    const { got, events } = await p.evaluate(() => ({ got: window.got, events: window.events }));
    const t = tally(got, N);
    console.log(`# server-side subscription: published=${N} received=${t.received} lost=${t.lost} duplicated=${t.dup} events=${events.join(', ')}`);
    assert.deepEqual(t, { received: N, lost: 0, dup: 0, disorder: 0 });
    assert.deepEqual(events, ['subscribed feed {"why":"invited"} true', 'unsubscribed feed 2000']);
    assert.deepEqual(p.errors, []);
  }
  await a.close();
  await b.close();
});
