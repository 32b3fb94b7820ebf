// Browser tests of calls: the video-room demo (/room.html) with the SDK's
// joinRoom, in headless Chromium with a fake camera and microphone,
// against the real switchboard binary on loopback (webrtc_loopback, the
// built-in TURN server on 127.0.0.1 with 127.0.0.0/8 allowed).
//
// What only a browser shows is checked the honest way: getStats() of the
// receiving connection, framesDecoded rising and frameWidth, and the
// selected candidate pair for the relayed call. Every wait polls a
// condition within a bound; nothing is timed.
//
// E2E_VERBOSE=1 shows the server's log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';

const API_KEY = 'e2e-room-key';
const { BUILD_TIMEOUT } = harness;
const WAIT = 60_000; // bound of every wait for a condition (2 loaded cores, three encoders)
const TEST_TIMEOUT = 240_000;
const SMALL = '640x360'; // camera size where the test does not need three layers

let tmpDir;
let bin;
let context;
let srv;

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-room-'));
  bin = await harness.binary(tmpDir);
  context = await harness.launchBrowser(tmpDir, harness.webrtcArgs);
  srv = await harness.startServer(bin, '127.0.0.1:0', API_KEY, [
    '--webrtc-loopback',
    '--turn-addr', '127.0.0.1:0',
    '--turn-allowed-peers', '127.0.0.0/8',
  ]);
  await context.grantPermissions(['local-network-access', 'camera', 'microphone'], { origin: srv.url.slice(0, -1) }).catch(() =>
    context.grantPermissions(['camera', 'microphone'], { origin: srv.url.slice(0, -1) }),
  );
}, { timeout: BUILD_TIMEOUT + 60_000 });

after(async () => {
  await context?.close().catch(() => {});
  if (srv) await harness.stopServer(srv);
  harness.killAll();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// waitFor polls cond (async allowed) until it returns a truthy value.
async function waitFor(cond, what, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function rooms() {
  const res = await fetch(`${srv.url}api/rooms`, {
    headers: { Authorization: `apikey ${API_KEY}` },
    signal: AbortSignal.timeout(WAIT),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.result?.rooms ?? body.rooms;
}

// openRoom opens the demo in a new page and waits until it joined.
async function openRoom(room, query = '') {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  await page.goto(`${srv.url}room.html?room=${room}&video=${SMALL}${query}`);
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'joined', null, { timeout: WAIT });
  return page;
}

// inbound lists a page's received videos from getStats(): participant,
// framesDecoded, frameWidth.
function inbound(page) {
  return page.evaluate(async () => {
    const room = window.sbRoom;
    const pc = room.pc(room.mode === 'p2p' ? 'peer' : 'subscriber');
    if (!pc) return [];
    const out = [];
    (await pc.getStats()).forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
      let participant = '';
      for (const p of room.participants.values()) {
        for (const t of p.tracks.values()) if (t.track && t.track.id === s.trackIdentifier) participant = p.id;
      }
      if (room.mode === 'p2p') participant = [...room.participants.keys()][0] ?? '';
      out.push({ participant, track: s.trackIdentifier, framesDecoded: s.framesDecoded ?? 0, frameWidth: s.frameWidth ?? 0 });
    });
    return out;
  });
}

// decoding waits until page decodes video from every participant in from,
// and the frame counts rise after that (frames keep coming).
async function decoding(page, from, what) {
  const first = await waitFor(async () => {
    const got = await inbound(page);
    const ok = from.every((id) => got.some((s) => s.participant === id && s.framesDecoded > 0));
    return ok && got;
  }, `${what}: first frames from ${from.join(', ')}`);
  await waitFor(async () => {
    const got = await inbound(page);
    return from.every((id) => {
      const before = Math.max(...first.filter((s) => s.participant === id).map((s) => s.framesDecoded));
      return got.some((s) => s.participant === id && s.framesDecoded > before + 10);
    });
  }, `${what}: frame counts rising`);
}

const participantId = (page) => page.evaluate(() => window.sbRoom.participantId);

test('three pages in one room: each decodes the other two; /api/rooms lists three publishers', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 3; i++) pages.push(await openRoom('three'));
    const ids = await Promise.all(pages.map(participantId));
    for (let i = 0; i < 3; i++) {
      await decoding(pages[i], ids.filter((_, j) => j !== i), `page ${i}`);
    }
    const room = await waitFor(async () => {
      const r = (await rooms()).find((x) => x.name === 'three');
      const publishers = r?.participants.filter((p) => p.tracks.some((t) => t.kind === 'video')) ?? [];
      return publishers.length === 3 && r;
    }, '/api/rooms with three publishers');
    assert.deepEqual(room.participants.map((p) => p.participant).sort(), [...ids].sort());
    // The tiles show the layer indicator from the same statistics.
    await waitFor(() => pages[0].evaluate(() => [...document.querySelectorAll('.tile:not([data-local]) .layer')].filter((e) => e.textContent.includes('×')).length === 2), 'two layer indicators');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});
