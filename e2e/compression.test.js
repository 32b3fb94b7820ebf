// Browser interop of WebSocket compression (permessage-deflate, RFC 7692):
// Chromium's own WebSocket negotiates it with a server started with
// --websocket-compression, inflates what the server compresses, and
// compresses what it sends, which the server inflates. The server's
// metrics show that both directions really were compressed. A server
// without the option negotiates nothing and the same page works.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';

const API_KEY = 'e2e-compression-key';
const TEST_TIMEOUT = 60_000;

let tmpDir;
let bin;
let context;

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-compression-'));
  bin = await harness.binary(tmpDir);
  context = await harness.launchBrowser(tmpDir);
}, { timeout: harness.BUILD_TIMEOUT + 30_000 });

after(async () => {
  await context?.close().catch(() => {});
  harness.killAll();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// metric returns the sum of a counter's samples whose labels contain match.
async function metric(server, name, match = '') {
  const res = await fetch(`${server.url}metrics`, { headers: { Authorization: `apikey ${API_KEY}` } });
  const text = await res.text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && line.includes(match)) sum += Number(line.split(' ').pop());
  }
  return sum;
}

async function publishAPI(server, data) {
  const res = await fetch(`${server.url}api/publish`, {
    method: 'POST',
    headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ channel: 'feed', data }),
  });
  assert.equal(res.status, 200, await res.text());
}

// roundTrip opens a plain WebSocket in a page, subscribes to "feed",
// publishes a large message itself, and waits for the server's large
// publication; it returns the negotiated extensions and what arrived.
async function roundTrip(server) {
  const page = await context.newPage();
  try {
    await page.goto(server.url);
    const ready = page.evaluate((url) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const got = [];
      window.__ws = ws;
      ws.onerror = () => reject(new Error('websocket error'));
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.id === 1) window.__subscribed = true;
        if (m.id === 1) ws.send(JSON.stringify({ id: 2, command: 'publish', channel: 'feed', data: { from: 'browser', text: 'hello '.repeat(300) } }));
        if (m.id === 2 && m.error) reject(new Error(JSON.stringify(m.error)));
        if (m.channel === 'feed' && m.offset && m.data) got.push(m.data);
        if (got.length === 2) resolve({ extensions: ws.extensions, got });
      };
      ws.onopen = () => ws.send(JSON.stringify({ id: 1, command: 'subscribe', channel: 'feed' }));
      setTimeout(() => reject(new Error('timed out; got ' + JSON.stringify(got))), 15_000);
    }), server.url.replace('http', 'ws') + 'ws');
    // The server's publication goes out once the page is subscribed.
    await page.waitForFunction(() => window.__subscribed === true, null, { timeout: 15_000 });
    const items = Array.from({ length: 50 }, (_, i) => ({ id: i, price: 100 + i, symbol: 'SWB' }));
    await publishAPI(server, { from: 'api', items });
    return await ready;
  } finally {
    await page.close();
  }
}

test('Chromium negotiates permessage-deflate; messages are compressed both ways and decoded', { timeout: TEST_TIMEOUT }, async () => {
  const server = await harness.startServer(bin, '127.0.0.1:0', API_KEY, ['--websocket-compression']);
  try {
    const { extensions, got } = await roundTrip(server);
    assert.match(extensions, /permessage-deflate/);
    assert.match(extensions, /client_no_context_takeover/);
    const froms = got.map((d) => d.from).sort();
    assert.deepEqual(froms, ['api', 'browser']);
    assert.equal(got.find((d) => d.from === 'api').items.length, 50);
    assert.equal(got.find((d) => d.from === 'browser').text, 'hello '.repeat(300));
    assert.ok(await metric(server, 'switchboard_websocket_compressed_messages_total', 'direction="sent"') >= 2);
    assert.ok(await metric(server, 'switchboard_websocket_compressed_messages_total', 'direction="received"') >= 1);
    assert.ok(await metric(server, 'switchboard_websocket_compression_saved_bytes_total') > 1000);
  } finally {
    await harness.stopServer(server);
  }
});

test('without --websocket-compression nothing is negotiated and the same page works', { timeout: TEST_TIMEOUT }, async () => {
  const server = await harness.startServer(bin, '127.0.0.1:0', API_KEY);
  try {
    const { extensions, got } = await roundTrip(server);
    assert.equal(extensions, '');
    assert.equal(got.length, 2);
    assert.equal(await metric(server, 'switchboard_websocket_compressed_messages_total'), 0);
  } finally {
    await harness.stopServer(server);
  }
});
