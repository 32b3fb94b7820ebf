// End-to-end tests of the demo chat page (web/static) in a real browser
// against a real switchboard binary.
//
// The binary is built from this checkout (or taken from SWITCHBOARD_BIN),
// started on a free loopback port, and driven with headless Chromium through
// playwright-core. Every wait is bounded, and the server and the browser are
// stopped at the end even when a test fails.
//
// Set E2E_SCREENSHOT=/some/file.png to save a picture of the chat page, and
// E2E_VERBOSE=1 to see the server's log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';

const API_KEY = 'e2e-test-key';

const { BUILD_TIMEOUT } = harness;
const CONNECT_TIMEOUT = 10_000;
const DELIVERY_TIMEOUT = 5_000;
// After a restart the page retries with backoff: with the server gone for
// about a second, its next attempt comes within a few seconds.
const RECONNECT_TIMEOUT = 30_000;
const TEST_TIMEOUT = 60_000;

let tmpDir; // holds the binary (when built here) and the browser profile
let bin;
let server; // the running server, see startServer
let context; // the browser

const startServer = (addr) => harness.startServer(bin, addr, API_KEY);
const { stopServer } = harness;

// openChat opens the demo in a new tab and waits until it is connected.
async function openChat(name) {
  const page = await context.newPage();
  // Uncaught exceptions only: the console also reports each refused
  // WebSocket while the server is down, which is expected.
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  page.sockets = 0;
  page.on('websocket', () => page.sockets++);
  // Every file the page loads, the favicon included, must be there.
  page.missing = [];
  page.on('response', (res) => {
    if (res.status() >= 400) page.missing.push(`${res.status()} ${res.url()}`);
  });
  await page.goto(server.url, { timeout: CONNECT_TIMEOUT });
  await waitForState(page, 'connected', CONNECT_TIMEOUT);
  await page.fill('#name', name);
  return page;
}

// waitForState waits until the page's #status shows state.
async function waitForState(page, state, timeout) {
  try {
    await page.waitForSelector(`#status[data-state="${state}"]`, { timeout });
  } catch (err) {
    const now = await page.textContent('#status').catch(() => '?');
    throw new Error(`status did not become ${state} within ${timeout} ms (it shows "${now}")`, { cause: err });
  }
}

async function send(page, text) {
  await page.fill('#message', text);
  await page.click('#send', { timeout: DELIVERY_TIMEOUT });
}

// waitForMessage waits for the latest chat message containing text and returns
// its user name, its text, and whether the page marked it as its own.
async function waitForMessage(page, text) {
  const item = page.locator('#messages li.msg').filter({ has: page.locator('.text', { hasText: text }) }).last();
  await item.waitFor({ timeout: DELIVERY_TIMEOUT });
  return item.evaluate((li) => ({
    user: li.querySelector('.user').textContent,
    text: li.querySelector('.text').textContent,
    mine: li.classList.contains('mine'),
  }));
}

async function notes(page) {
  return page.locator('#messages li.note').allTextContents();
}

// waitForNote waits for a line from the page itself that starts with prefix.
async function waitForNote(page, prefix, timeout) {
  try {
    await page.waitForFunction(
      (p) => [...document.querySelectorAll('#messages li.note')].some((li) => li.textContent.startsWith(p)),
      prefix,
      { timeout },
    );
  } catch (err) {
    throw new Error(`no note "${prefix}..." within ${timeout} ms; notes: ${JSON.stringify(await notes(page))}`, { cause: err });
  }
}

function assertNoPageErrors(...pages) {
  for (const page of pages) assert.deepEqual(page.errors.map(String), [], 'errors in the page');
}

async function closePages(...pages) {
  await Promise.all(pages.map((p) => p.close().catch(() => {})));
}

// chatTest is test() with a time limit and a running server, and with the
// end of the server's log in the report when the test fails.
function chatTest(name, fn) {
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    // A test that failed halfway may have left the server stopped.
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
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-'));
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

chatTest('a message sent from one page shows in both', async () => {
  const alice = await openChat('alice');
  const bob = await openChat('bob');
  try {
    const text = `hello bob ${Date.now()}`;
    await send(alice, text);
    assert.deepEqual(await waitForMessage(bob, text), { user: 'alice', text, mine: false });
    const own = await waitForMessage(alice, text);
    assert.equal(own.user, 'alice');
    // The sender marks its own message once the publish reply arrives.
    await alice.waitForSelector('#messages li.msg.mine', { timeout: DELIVERY_TIMEOUT });
    assert.equal(await alice.inputValue('#message'), '', 'the composer is cleared after sending');

    // User text is shown as text, never interpreted as HTML.
    const markup = '<img src=x onerror="window.pwned=1"><b>bold</b>';
    await send(bob, markup);
    assert.equal((await waitForMessage(alice, markup)).text, markup);
    assert.equal(await alice.locator('#messages img, #messages b').count(), 0);
    assert.equal(await alice.evaluate(() => window.pwned), undefined);

    if (process.env.E2E_SCREENSHOT) {
      await send(bob, 'Hi alice! This is the Switchboard demo chat.');
      await waitForMessage(alice, 'Hi alice!');
      await alice.setViewportSize({ width: 420, height: 640 });
      await alice.screenshot({ path: process.env.E2E_SCREENSHOT, timeout: DELIVERY_TIMEOUT });
    }
    assertNoPageErrors(alice, bob);
    assert.deepEqual([...alice.missing, ...bob.missing], [], 'files the pages could not load');
  } finally {
    await closePages(alice, bob);
  }
});

chatTest('the pages have an icon', async () => {
  const page = await context.newPage();
  try {
    await page.goto(server.url, { timeout: CONNECT_TIMEOUT });
    const href = await page.getAttribute('link[rel="icon"]', 'href');
    for (const file of [href, 'favicon.ico']) {
      const res = await fetch(new URL(file, server.url), { signal: AbortSignal.timeout(DELIVERY_TIMEOUT) });
      assert.equal(res.status, 200, `${file}: ${res.status}`);
      assert.match(res.headers.get('content-type'), /^image\//, file);
    }
  } finally {
    await closePages(page);
  }
});

chatTest('pages reconnect by themselves after a server restart', async () => {
  const alice = await openChat('alice');
  const bob = await openChat('bob');
  try {
    const addr = server.addr;
    await stopServer(server);
    for (const page of [alice, bob]) {
      await waitForNote(page, 'Connection lost (4000', CONNECT_TIMEOUT);
      // The status alternates between a countdown and short "connecting"
      // attempts while the server is down; catch a countdown.
      await page.waitForFunction(
        () => /^reconnecting in \d+\.\ds$/.test(document.getElementById('status').textContent),
        null,
        { timeout: CONNECT_TIMEOUT },
      );
      assert.ok(await page.isDisabled('#send'), 'sending is disabled while offline');
    }

    server = await startServer(addr); // the same port: the pages know no other
    assert.equal(server.addr, addr);
    await Promise.all([alice, bob].map((p) => waitForState(p, 'connected', RECONNECT_TIMEOUT)));
    await Promise.all([alice, bob].map((p) => waitForNote(p, 'Reconnected.', DELIVERY_TIMEOUT)));
    // Back in the room, the backoff starts again from its base delay: a
    // second restart right after this one is no longer waited out.
    for (const page of [alice, bob]) assert.equal(await page.getAttribute('#status', 'data-attempt'), '0');

    // A second restart, right away.
    await stopServer(server);
    await Promise.all([alice, bob].map((p) => waitForState(p, 'reconnecting', CONNECT_TIMEOUT)));
    server = await startServer(addr);
    await Promise.all([alice, bob].map((p) => waitForState(p, 'connected', RECONNECT_TIMEOUT)));
    for (const page of [alice, bob]) assert.equal(await page.getAttribute('#status', 'data-attempt'), '0');

    // The pages subscribed again: chat works both ways.
    const text1 = `back again ${Date.now()}`;
    await send(bob, text1);
    assert.equal((await waitForMessage(alice, text1)).user, 'bob');
    const text2 = `welcome back ${Date.now()}`;
    await send(alice, text2);
    assert.equal((await waitForMessage(bob, text2)).user, 'alice');
    assertNoPageErrors(alice, bob);
  } finally {
    await closePages(alice, bob);
  }
});

chatTest('a page does not reconnect after a 4500+ close code', async () => {
  const alice = await openChat('alice');
  const bob = await openChat('bob');
  try {
    // disconnect closes a client with 4500 (reconnect false) or 4003 (true).
    const disconnect = async (page, reconnect) => {
      const client = await page.getAttribute('#status', 'data-client');
      assert.ok(client, 'the page shows its client id');
      const res = await fetch(`${server.url}api/disconnect`, {
        method: 'POST',
        headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ client, reconnect }),
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT),
      });
      assert.equal(res.status, 200, await res.text());
    };

    await disconnect(alice, false);
    await waitForNote(alice, 'Disconnected by the server (4500', CONNECT_TIMEOUT);
    await waitForState(alice, 'disconnected', CONNECT_TIMEOUT);
    const sockets = alice.sockets;

    await disconnect(bob, true);
    await waitForNote(bob, 'Connection lost (4003', CONNECT_TIMEOUT);
    await waitForNote(bob, 'Reconnected.', RECONNECT_TIMEOUT);
    await waitForState(bob, 'connected', CONNECT_TIMEOUT);

    // Proving that nothing happens takes a wait. The page's first retry
    // would come within 500 ms; give it three times that.
    await alice.waitForTimeout(1500);
    assert.equal(alice.sockets, sockets, 'no new WebSocket after 4500');
    assert.equal(await alice.textContent('#status'), 'disconnected');
    assertNoPageErrors(alice, bob);
  } finally {
    await closePages(alice, bob);
  }
});

chatTest('missed messages are recovered after a dropped connection, and presence is shown', async () => {
  const alice = await openChat('alice');
  const bob = await openChat('bob');
  try {
    await bob.waitForSelector('#presence[data-count="2"]', { timeout: DELIVERY_TIMEOUT });
    const client = await bob.getAttribute('#status', 'data-client');
    const api = (method, body) => fetch(`${server.url}api/${method}`, {
      method: 'POST',
      headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT),
    });
    // Cut bob off (he may come back), and publish while he is away.
    assert.equal((await api('disconnect', { client, reconnect: true })).status, 200);
    await waitForNote(bob, 'Connection lost (4003', CONNECT_TIMEOUT);
    const texts = [];
    for (let i = 0; i < 5; i++) {
      const text = `while away ${i} ${Date.now()}`;
      texts.push(text);
      const res = await api('publish', { channel: 'chat', data: { user: 'server', text, ts: Date.now() } });
      assert.equal(res.status, 200, await res.text());
    }
    await waitForState(bob, 'connected', RECONNECT_TIMEOUT);
    await waitForNote(bob, 'Reconnected.', DELIVERY_TIMEOUT);
    // Every message sent while away shows exactly once, in order.
    for (const text of texts) await waitForMessage(bob, text);
    const shown = await bob.locator('#messages li.msg .text').allTextContents();
    const away = shown.filter((t) => t.startsWith('while away'));
    assert.deepEqual(away, texts);
    assertNoPageErrors(alice, bob);
  } finally {
    await closePages(alice, bob);
  }
});
