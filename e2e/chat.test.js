// End-to-end tests of the demo chat page (web/static), which is written
// with the browser SDK the server serves at /sdk/switchboard.js, in a real
// browser against a real switchboard binary: chat between two pages,
// presence and the typing indicator, history on joining, a message sent
// offline (pending, then delivered once), restarts and disconnects.
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
let otherContext; // a second browser profile, to take one page offline alone

// join_leave on: the chat keeps its member list from join and leave pushes.
const startServer = (addr) => harness.startServer(bin, addr, API_KEY, ['--join-leave']);
const { stopServer } = harness;

// openChat opens the demo in a new tab (of ctx, the first browser by
// default) and waits until it is connected.
async function openChat(name, ctx = context) {
  const page = await ctx.newPage();
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

// messageItem is the latest chat message containing text.
function messageItem(page, text) {
  return page.locator('#messages li.msg').filter({ has: page.locator('.text', { hasText: text }) }).last();
}

// waitForMessage waits for the latest chat message containing text and returns
// its user name, its text, and whether the page marked it as its own.
async function waitForMessage(page, text) {
  const item = messageItem(page, text);
  await item.waitFor({ timeout: DELIVERY_TIMEOUT });
  return item.evaluate((li) => ({
    user: li.querySelector('.user').textContent,
    text: li.querySelector('.text').textContent,
    mine: li.classList.contains('mine'),
  }));
}

// countMessages counts the chat messages whose text is exactly text.
async function countMessages(page, text) {
  const texts = await page.locator('#messages li.msg .text').allTextContents();
  return texts.filter((t) => t === text).length;
}

// waitForDelivery waits until our message containing text shows state
// (pending, delivered).
async function waitForDelivery(page, text, state, timeout = DELIVERY_TIMEOUT) {
  try {
    await page.waitForFunction(
      ([t, s]) => [...document.querySelectorAll('#messages li.msg.mine')]
        .some((li) => li.querySelector('.text').textContent === t && li.dataset.delivery === s),
      [text, state],
      { timeout },
    );
  } catch (err) {
    const now = await messageItem(page, text).getAttribute('data-delivery').catch(() => 'not shown');
    throw new Error(`message "${text}" not ${state} within ${timeout} ms (it is ${now})`, { cause: err });
  }
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
  otherContext = await harness.launchBrowser(tmpDir);
}, { timeout: BUILD_TIMEOUT + 30_000 });

after(async () => {
  await context?.close().catch(() => {});
  await otherContext?.close().catch(() => {});
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
    // The sender marks its own message, delivered once the server has it.
    assert.equal(own.mine, true);
    await waitForDelivery(alice, text, 'delivered');
    assert.equal(await countMessages(alice, text), 1, 'its own message shows once');
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

chatTest('pages reconnect by themselves after two server restarts, and do not take the others\' messages for theirs', async () => {
  const alice = await openChat('alice');
  const bob = await openChat('bob');
  try {
    const addr = server.addr;
    // restart stops the server, waits until both pages saw it, and starts
    // it again on the same port (the pages know no other), with an empty
    // in-memory broker: a new epoch, offsets from 1 again.
    const restart = async () => {
      await stopServer(server);
      for (const page of [alice, bob]) {
        await waitForNote(page, 'Connection lost (4000', CONNECT_TIMEOUT);
        await waitForState(page, 'reconnecting', CONNECT_TIMEOUT);
        // The status counts the attempts (and down to the next one).
        await page.waitForSelector('#status[data-attempt]:not([data-attempt="1"])', { timeout: CONNECT_TIMEOUT });
        assert.match(await page.textContent('#status'), /^reconnecting(…| in \d+s) \(attempt \d+\)$/);
      }
      server = await startServer(addr);
      assert.equal(server.addr, addr);
      await Promise.all([alice, bob].map((p) => waitForState(p, 'connected', RECONNECT_TIMEOUT)));
    };

    await restart();
    await Promise.all([alice, bob].map((p) => waitForNote(p, 'Reconnected.', DELIVERY_TIMEOUT)));
    // The first message of the new epoch: offset 1, from alice.
    const text0 = `first after the restart ${Date.now()}`;
    await send(alice, text0);
    await waitForMessage(bob, text0);
    await waitForDelivery(alice, text0, 'delivered');
    const offset0 = await messageItem(alice, text0).getAttribute('data-offset');

    // A second restart, right away.
    await restart();

    // The pages subscribed again: chat works both ways. Bob's message now
    // has the offset alice's had: she must not take it for hers.
    const text1 = `back again ${Date.now()}`;
    await send(bob, text1);
    assert.deepEqual(await waitForMessage(alice, text1), { user: 'bob', text: text1, mine: false });
    assert.equal(await messageItem(alice, text1).getAttribute('data-offset'), offset0, 'the same offset in the new epoch');
    assert.equal((await waitForMessage(bob, text1)).mine, true);
    const text2 = `welcome back ${Date.now()}`;
    await send(alice, text2);
    assert.deepEqual(await waitForMessage(bob, text2), { user: 'alice', text: text2, mine: false });
    assert.equal((await waitForMessage(alice, text2)).mine, true);
    assertNoPageErrors(alice, bob);
  } finally {
    await closePages(alice, bob);
  }
});

chatTest('presence shows both pages by name, and a typing indicator appears', async () => {
  const alice = await openChat('alice');
  const bob = await openChat('bob');
  try {
    // Names travel when a page connects or changes its name; bob's page
    // connected before he typed his name, so he announces it again.
    await bob.dispatchEvent('#name', 'change');
    await alice.waitForSelector('#presence[data-count="2"]', { timeout: DELIVERY_TIMEOUT });
    await bob.waitForSelector('#presence[data-count="2"]', { timeout: DELIVERY_TIMEOUT });
    await alice.waitForFunction(() => /\bbob\b/.test(document.getElementById('who').textContent), null, { timeout: DELIVERY_TIMEOUT });
    // The list follows join and leave pushes: no presence polling.
    await alice.waitForSelector('#presence[data-source="pushes"]', { timeout: DELIVERY_TIMEOUT });
    assert.match(await alice.textContent('#who'), /alice \(you\)/);

    // Bob types: alice sees it for a few seconds.
    await bob.locator('#message').pressSequentially('hel', { timeout: DELIVERY_TIMEOUT });
    await alice.waitForSelector('#typing:not([hidden])', { timeout: DELIVERY_TIMEOUT });
    assert.equal(await alice.textContent('#typing'), 'bob is typing…');
    assert.equal(await bob.isHidden('#typing'), true, 'bob does not see himself typing');
    await alice.waitForSelector('#typing[hidden]', { state: 'attached', timeout: 10_000 });

    // Carol comes in: the others are told, and she gets the last messages
    // from history.
    const text = `before carol ${Date.now()}`;
    await send(alice, text);
    await waitForMessage(bob, text);
    // Carol's page announces the name it starts with: the one remembered
    // in this browser profile (the pages share it).
    await alice.evaluate(() => localStorage.setItem('switchboard-chat-name', 'carol'));
    const carol = await openChat('carol');
    try {
      assert.deepEqual(await waitForMessage(carol, text), { user: 'alice', text, mine: false });
      await waitForNote(alice, 'carol joined', DELIVERY_TIMEOUT + 3000);
      await alice.waitForSelector('#presence[data-count="3"]', { timeout: DELIVERY_TIMEOUT });
    } finally {
      await closePages(carol);
    }
    await waitForNote(alice, 'carol left', DELIVERY_TIMEOUT + 3000);
    await alice.waitForSelector('#presence[data-count="2"]', { timeout: DELIVERY_TIMEOUT });
    assertNoPageErrors(alice, bob);
  } finally {
    await closePages(alice, bob);
  }
});

chatTest('a message sent offline shows pending, then delivered, and reaches the other page once', async () => {
  const alice = await openChat('alice', otherContext);
  const bob = await openChat('bob');
  try {
    await otherContext.setOffline(true);
    await waitForState(alice, 'offline', CONNECT_TIMEOUT);
    const text = `sent offline ${Date.now()}`;
    await send(alice, text);
    await waitForDelivery(alice, text, 'pending');
    assert.equal((await waitForMessage(alice, text)).mine, true);
    // It waits in the outbox: bob has nothing yet.
    await bob.waitForTimeout(500);
    assert.equal(await countMessages(bob, text), 0);

    await otherContext.setOffline(false);
    await waitForState(alice, 'connected', RECONNECT_TIMEOUT);
    await waitForDelivery(alice, text, 'delivered');
    assert.equal((await waitForMessage(bob, text)).mine, false);
    // Once on each page, also after the echo of the publication.
    await bob.waitForTimeout(500);
    assert.equal(await countMessages(bob, text), 1);
    assert.equal(await countMessages(alice, text), 1);
    assert.deepEqual(await alice.evaluate(() => document.querySelectorAll('#messages li.msg.mine').length), 1);
    assertNoPageErrors(alice, bob);
  } finally {
    await otherContext.setOffline(false).catch(() => {});
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
