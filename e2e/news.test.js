// End-to-end tests of the live news demo (web/static/news.html), which reads
// the "news" channel with the browser SDK (/sdk/switchboard.js) over
// Server-Sent Events only, against a real switchboard binary in headless
// Chromium.
//
// The binary is built from this checkout (or taken from SWITCHBOARD_BIN) and
// started on a free loopback port. Every wait is bounded, and the server and
// the browser are stopped at the end even when a test fails.
//
// E2E_VERBOSE=1 shows the server's log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';

const API_KEY = 'e2e-news-key';

const { BUILD_TIMEOUT } = harness;
const CONNECT_TIMEOUT = 10_000;
const DELIVERY_TIMEOUT = 5_000;
// The server hints a reconnect delay of 1 to 2 s; the browser adds its own.
const RECONNECT_TIMEOUT = 15_000;
const TEST_TIMEOUT = 60_000;

let tmpDir; // holds the binary (when built here) and the browser profile
let bin;
let server; // the running server, see startServer
let context; // the browser

const startServer = (addr) => harness.startServer(bin, addr, API_KEY);
const { stopServer } = harness;

// api calls the server API from the test (not from the page).
async function api(method, body) {
  const res = await fetch(`${server.url}api/${method}`, {
    method: 'POST',
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(DELIVERY_TIMEOUT),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `${method}: ${text}`);
  return JSON.parse(text).result;
}

async function publish(title) {
  return (await api('publish', { channel: 'news', data: { title } })).offset;
}

// openNews opens the news page in a new tab and waits until its stream is
// connected. The page records the EventSource requests it makes.
async function openNews() {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  page.streamRequests = [];
  page.on('request', (req) => {
    if (req.url().includes('/sse?')) page.streamRequests.push(req);
  });
  await page.goto(`${server.url}news.html`, { timeout: CONNECT_TIMEOUT });
  await waitForState(page, 'connected', CONNECT_TIMEOUT);
  return page;
}

async function waitForState(page, state, timeout) {
  try {
    await page.waitForSelector(`#status[data-state="${state}"]`, { timeout });
  } catch (err) {
    const now = await page.textContent('#status').catch(() => '?');
    throw new Error(`status did not become ${state} within ${timeout} ms (it shows "${now}")`, { cause: err });
  }
}

// shownOffsets returns the offsets of the items on the page, oldest first.
async function shownOffsets(page) {
  const offs = await page.locator('#feed li[data-offset]').evaluateAll((lis) => lis.map((li) => Number(li.dataset.offset)));
  return offs.reverse();
}

async function waitForItems(page, n, timeout) {
  try {
    await page.waitForFunction((k) => document.querySelectorAll('#feed li[data-offset]').length >= k, n, { timeout });
  } catch (err) {
    throw new Error(`want ${n} items within ${timeout} ms, the page shows ${JSON.stringify(await shownOffsets(page))}`, { cause: err });
  }
}

function newsTest(name, fn) {
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) server = await startServer('127.0.0.1:0');
    try {
      await fn(t);
    } catch (err) {
      t.diagnostic(`server log (last lines):\n${server?.log.slice(-20).join('\n')}`);
      throw err;
    }
  });
}

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-news-'));
  bin = await harness.binary(tmpDir);
  server = await startServer('127.0.0.1:0');
  context = await harness.launchBrowser(tmpDir);
}, { timeout: BUILD_TIMEOUT + 30_000 });

after(async () => {
  await context?.close().catch(() => {});
  if (server) await stopServer(server);
  harness.killAll();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

newsTest('the feed shows publications and recovers every item missed while the server cut the stream', async () => {
  const page = await openNews();
  try {
    const first = [];
    for (let i = 1; i <= 3; i++) first.push(await publish(`before the cut ${i}`));
    await waitForItems(page, 3, DELIVERY_TIMEOUT);
    assert.deepEqual(await shownOffsets(page), first);
    assert.equal(await page.locator('#feed li .title').first().textContent(), 'before the cut 3');

    // The server cuts the stream (reconnect allowed); the SDK reconnects
    // after a backoff delay, resuming from the last event it delivered.
    const client = await page.getAttribute('#status', 'data-client');
    assert.ok(client, 'the page shows its client id');
    await api('disconnect', { client, reconnect: true });
    const missed = [];
    for (let i = 1; i <= 5; i++) missed.push(await publish(`during the gap ${i}`));

    await page.waitForFunction((old) => {
      const s = document.getElementById('status');
      return s.dataset.state === 'connected' && s.dataset.client !== old;
    }, client, { timeout: RECONNECT_TIMEOUT });
    await waitForItems(page, 8, DELIVERY_TIMEOUT);
    const live = await publish('after the reconnect');
    await waitForItems(page, 9, DELIVERY_TIMEOUT);

    // Every item exactly once, in order; no page notice about a gap.
    assert.deepEqual(await shownOffsets(page), [...first, ...missed, live]);
    assert.equal(await page.isHidden('#notice'), true, await page.textContent('#notice'));
    // The SDK resumed the stream from the position of the last item it had
    // (since=OFFSET:EPOCH per channel).
    assert.equal(page.streamRequests.length, 2);
    const resumed = new URL(page.streamRequests[1].url());
    const since = resumed.searchParams.get('since') ?? '';
    assert.ok(since.startsWith(`${first.at(-1)}:`), `the reconnect resumes after offset ${first.at(-1)}: ${resumed}`);
    assert.deepEqual(page.errors.map(String), []);
  } finally {
    await page.close().catch(() => {});
  }
});

newsTest('after a restart the page shows that what it missed is gone, and goes on', async () => {
  const page = await openNews();
  try {
    const before = await publish('before the restart');
    await waitForItems(page, 1, DELIVERY_TIMEOUT);
    const addr = server.addr;
    await stopServer(server);
    await waitForState(page, 'reconnecting', CONNECT_TIMEOUT);
    server = await startServer(addr); // same port, new epoch: history is lost
    await page.waitForSelector('#notice:not([hidden])', { timeout: RECONNECT_TIMEOUT });
    assert.match(await page.textContent('#notice'), /could not be recovered/);
    await waitForState(page, 'connected', CONNECT_TIMEOUT);
    // The feed marks the place, and goes on with the new items.
    assert.equal(await page.locator('#feed li.gap').count(), 1);
    const off = await publish('after the restart');
    await waitForItems(page, 2, DELIVERY_TIMEOUT);
    assert.deepEqual(await shownOffsets(page), [before, off]);
    const order = await page.locator('#feed li').evaluateAll((lis) => lis.map((li) => li.className || li.dataset.offset));
    assert.deepEqual(order, [String(off), 'gap', String(before)], 'newest first, the gap between');
    assert.deepEqual(page.errors.map(String), []);
  } finally {
    await page.close().catch(() => {});
  }
});

newsTest('a disconnect without reconnect stops the page\'s stream', async () => {
  const page = await openNews();
  try {
    const client = await page.getAttribute('#status', 'data-client');
    await api('disconnect', { client, reconnect: false });
    await waitForState(page, 'disconnected', CONNECT_TIMEOUT);
    assert.match(await page.textContent('#notice'), /4500/);
    // The SDK would retry within a second; give it three.
    await page.waitForTimeout(3000);
    assert.equal(page.streamRequests.length, 1, 'no reconnect after the disconnect event');
    assert.deepEqual(page.errors.map(String), []);
  } finally {
    await page.close().catch(() => {});
  }
});
