// Browser test of delta-compressed subscriptions: a page subscribes with
// the SDK's `delta: 'fossil'` option to a feed of ~1 KB JSON objects that
// change a few fields per update, the connection is cut several times, and
// the app must see every publication once, in order, with its exact data,
// while most of them travel as deltas. Against the real switchboard binary
// in headless Chromium; every wait is bounded, nothing is timed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as harness from './harness.js';

const API_KEY = 'e2e-delta-key';
const WAIT = 30_000;
const TEST_TIMEOUT = 180_000;

let context;
let srv;

harness.suite('delta', API_KEY, ['--history-size', '2000'], (s) => ({ context, srv } = s));

async function api(method, body) {
  const res = await fetch(`${srv.url}api/${method}`, {
    method: 'POST',
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT),
  });
  return { status: res.status, body: JSON.parse(await res.text()) };
}

// update is publication i of the feed: about 1 KB, a few fields change.
function update(i) {
  const book = [];
  for (let l = 0; l < 16; l++) book.push({ level: l, bid: 99 - l + 0.25, ask: 101 + l + 0.75, size: (l + 1) * 100 + (l === i % 16 ? i : 0) });
  return {
    seq: i,
    symbol: 'SWB',
    name: 'Switchboard Holdings — 交易所 ✓',
    price: 100 + (i % 10) + (i % 100) / 100,
    volume: 1_000_000 + i * 37,
    updated_at: `2026-12-04T12:${String(Math.floor(i / 60) % 60).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}Z`,
    book,
    status: i % 50 === 49 ? 'halted' : 'open',
  };
}

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 20 });
  } catch (err) {
    const snap = await page.evaluate(() => ({ got: window.got?.length, gaps: window.gaps, state: window.c?.state })).catch(() => ({}));
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(snap)}`, { cause: err });
  }
}

// cut waits for a connection with a client id other than prev and a live
// subscription, then disconnects it through the server API.
async function cut(page, prev) {
  await waitFor(page, (p) => window.c.state === 'connected' && window.c.clientId && window.c.clientId !== p && window.sub.state === 'subscribed', prev, 'a new connection');
  const id = await page.evaluate(() => window.c.clientId);
  const r = await api('disconnect', { client: id, reconnect: true });
  assert.ok(r.status === 200 || r.status === 404, JSON.stringify(r.body));
  return id;
}

// deltasSent reads the server's count of publications sent as deltas.
async function deltasSent() {
  const text = await (await fetch(`${srv.url}metrics`, { signal: AbortSignal.timeout(WAIT) })).text();
  const m = text.match(/^switchboard_delta_publications_total\{kind="delta"\} (\S+)$/m);
  return m ? Number(m[1]) : 0;
}

for (const shared of [false, true]) {
  const how = shared ? 'the tabs\' shared connection (SharedWorker)' : 'the page\'s own connection';
  test(`a delta subscription over ${how} across 10 connection cuts: every publication once, in order, exact`, { timeout: TEST_TIMEOUT }, async () => {
    const channel = shared ? 'ticks-shared' : 'ticks';
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err));
    // What the server sends on the page's own connection: whole
    // publications and deltas (a SharedWorker's frames are not seen).
    const frames = { whole: 0, delta: 0, wholeBytes: 0, deltaBytes: 0 };
    page.on('websocket', (ws) =>
      ws.on('framereceived', (f) => {
        const s = typeof f.payload === 'string' ? f.payload : '';
        if (!s.startsWith(`{"channel":"${channel}"`)) return;
        if (s.endsWith(',"delta":true}')) {
          frames.delta++;
          frames.deltaBytes += s.length;
        } else {
          frames.whole++;
          frames.wholeBytes += s.length;
        }
      }),
    );
    const html = `<!doctype html><meta charset="utf-8"><title>delta test</title>
<script type="module">
import * as SB from '/sdk/switchboard.js';
window.got = []; window.gaps = [];
window.c = new SB.Switchboard(location.origin.replace('http', 'ws'), { transports: ['websocket'], sharedConnection: ${shared}, backoff: { base: 50, max: 400 } });
window.sub = c.subscribe('${channel}', { delta: 'fossil', onPublication: (p) => got.push(p.data), onGap: (g) => gaps.push(g) });
window.sdkLoaded = true;
</script>`;
    await page.route(`${srv.url}delta-test.html`, (r) => r.fulfill({ status: 200, contentType: 'text/html', body: html }));
    await page.goto(`${srv.url}delta-test.html`, { timeout: WAIT });
    await waitFor(page, () => window.sdkLoaded === true && window.sub.state === 'subscribed', null, 'subscribed');
    const deltasBefore = await deltasSent();

    const N = 300;
    const CUTS = 10;
    let published = 0;
    const publisher = (async () => {
      for (; published < N; published++) {
        const r = await api('publish', { channel, data: update(published) });
        assert.equal(r.status, 200, JSON.stringify(r.body));
      }
    })();
    let prev = null;
    for (let cuts = 0; cuts < CUTS; cuts++) {
      const deadline = Date.now() + WAIT;
      while (published < ((cuts + 1) * N) / (CUTS + 1)) {
        assert.ok(Date.now() < deadline, `the publisher is stuck at ${published}`);
        await new Promise((r) => setTimeout(r, 2));
      }
      prev = await cut(page, prev);
    }
    await publisher;
    await waitFor(page, (n) => window.got.length >= n, N, `${N} publications`);
    // Then, once the page is subscribed again after the last cut and has
    // a publication sent on that subscription (the first may come whole),
    // M more with no cut: the page holds each one's predecessor, so every
    // one of them travels as a delta.
    await waitFor(page, () => window.c.state === 'connected' && window.sub.state === 'subscribed', null, 'subscribed after the cuts');
    const M = 50;
    assert.equal((await api('publish', { channel, data: update(N) })).status, 200);
    await waitFor(page, (n) => window.got.length >= n, N + 1, `${N + 1} publications`);
    const quietBefore = await deltasSent();
    for (let i = N + 1; i < N + 1 + M; i++) {
      const r = await api('publish', { channel, data: update(i) });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    await waitFor(page, (n) => window.got.length >= n, N + 1 + M, `${N + 1 + M} publications`);
    const quietDeltas = (await deltasSent()) - quietBefore;
    const { got, gaps } = await page.evaluate(() => ({ got: window.got, gaps: window.gaps }));
    const deltas = (await deltasSent()) - deltasBefore;
    console.log(
      `# delta (${shared ? 'shared' : 'own'} connection): cuts=${CUTS} published=${N + 1 + M} received=${got.length} sent-as-delta=${deltas} (${quietDeltas} of the last ${M})` +
        (shared ? '' : ` frames: whole=${frames.whole} (${frames.wholeBytes} B) delta=${frames.delta} (${frames.deltaBytes} B)`),
    );
    assert.equal(got.length, N + 1 + M);
    for (let i = 0; i < N + 1 + M; i++) assert.deepEqual(got[i], update(i), `publication ${i}`);
    assert.deepEqual(gaps, []);
    assert.deepEqual(errors, []);
    // During the cuts, publications recovered after each come whole in
    // the subscribe reply, and how many depends on the page's speed; with
    // no cut, every one is a delta.
    assert.equal(quietDeltas, M, `${quietDeltas} of the last ${M} publications were sent as deltas`);
    // A delta queued just before a cut may never reach the page.
    if (!shared) assert.ok(frames.delta >= M && frames.delta <= deltas, `${frames.delta} delta frames seen, ${deltas} sent`);
    await page.close();
  });
}
