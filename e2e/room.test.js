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
// E2E_VERBOSE=1 shows the server's log; E2E_BW_TRACE=1 prints, every
// second of the bandwidth test, the layer, the estimate and the decoded
// width.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';
import { startRelay } from './udprelay.js';

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
  // A steady tone as the fake microphone (Chromium's own beeps are too
  // sparse to count as speech), so that the active speaker can be seen.
  const tone = path.join(tmpDir, 'tone.wav');
  fs.writeFileSync(tone, toneWAV());
  context = await harness.launchBrowser(tmpDir, [...harness.webrtcArgs, `--use-file-for-fake-audio-capture=${tone}`]);
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

// toneWAV is one second of a 440 Hz tone at half scale, 48 kHz mono
// 16-bit PCM (Chromium loops it).
function toneWAV() {
  const rate = 48000;
  const data = Buffer.alloc(rate * 2);
  for (let i = 0; i < rate; i++) data.writeInt16LE(Math.round(16000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + data.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * 2, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36);
  h.writeUInt32LE(data.length, 40);
  return Buffer.concat([h, data]);
}

// waitFor is harness.waitFor with this file's timeout.
function waitFor(cond, what, timeout = WAIT) {
  return harness.waitFor(cond, what, timeout);
}

async function rooms(server = srv) {
  const res = await fetch(`${server.url}api/rooms`, {
    headers: { Authorization: `apikey ${API_KEY}` },
    signal: AbortSignal.timeout(WAIT),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.result?.rooms ?? body.rooms;
}

// openRoom opens the demo in a new page and waits until it joined.
async function openRoom(room, query = '', server = srv) {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
  await page.goto(`${server.url}room.html?room=${room}&video=${SMALL}${query}`);
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
    for (const p of room.participants) {
      assert.ok(p.tracks.some((t) => t.kind === 'video' && t.source === 'camera' && t.simulcast), `${p.participant}: ${JSON.stringify(p.tracks)}`);
    }
    // Every page sends the tone: the server names active speakers from
    // the audio levels, and the page outlines the loudest.
    const speakers = await waitFor(() => pages[0].evaluate(() => window.sbRoom.speakers.length > 0 && window.sbRoom.speakers), 'an active speaker');
    assert.ok(speakers.every((id) => ids.includes(id)), `speakers ${speakers}`);
    await waitFor(() => pages[0].evaluate(() => document.querySelectorAll('.tile[data-speaking]').length === 1), 'one outlined tile');
    // The tiles show the layer indicator from the same statistics.
    await waitFor(() => pages[0].evaluate(() => [...document.querySelectorAll('.tile:not([data-local]) .layer')].filter((e) => e.textContent.includes('×')).length === 2), 'two layer indicators');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

// selectedPair describes the candidate pair a page's connection uses:
// local and remote candidate types, addresses and ports.
function selectedPair(page, name) {
  return page.evaluate(async (name) => {
    const pc = window.sbRoom.pc(name);
    if (!pc) return null;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) {
      stats.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      });
    }
    if (!pair) return null;
    const l = stats.get(pair.localCandidateId);
    const r = stats.get(pair.remoteCandidateId);
    return {
      local: { type: l.candidateType, address: l.address, port: l.port, relayProtocol: l.relayProtocol },
      remote: { type: r.candidateType, address: r.address, port: r.port },
    };
  }, name);
}

test('mute shows on the others\' tiles; a page that leaves, or closes, is removed from their view', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 3; i++) pages.push(await openRoom('leave'));
    const ids = await Promise.all(pages.map(participantId));
    await decoding(pages[0], [ids[1], ids[2]], 'page 0');
    const tilesOf = (page) => page.evaluate(() => [...document.querySelectorAll('.tile:not([data-local])')].map((t) => t.dataset.participant).sort());
    assert.deepEqual(await tilesOf(pages[0]), [ids[1], ids[2]].sort());

    // Mute buttons: the camera of page 1 stops; the others see it in
    // the tile's badges and the server lists the track as muted.
    await pages[1].click('#cam');
    await waitFor(() => pages[0].evaluate((id) => document.querySelector(`.tile[data-participant="${id}"] .badges`)?.textContent.includes('camera off'), ids[1]), 'the camera-off badge on page 0');
    await waitFor(async () => {
      const r = (await rooms()).find((x) => x.name === 'leave');
      return r?.participants.find((p) => p.participant === ids[1])?.tracks.find((t) => t.kind === 'video')?.muted === true;
    }, '/api/rooms shows the muted camera');
    await pages[1].click('#cam');
    await waitFor(() => pages[0].evaluate((id) => document.querySelector(`.tile[data-participant="${id}"] .badges`)?.textContent === '', ids[1]), 'the badge gone after unmuting');

    // Leave with the button: the others drop the tile, the participant
    // and its tracks.
    await pages[1].click('#leave');
    await pages[1].waitForFunction(() => document.getElementById('status').dataset.state === 'left', null, { timeout: WAIT });
    for (const i of [0, 2]) {
      await waitFor(async () => {
        const tiles = await tilesOf(pages[i]);
        const known = await pages[i].evaluate((id) => window.sbRoom.participants.has(id), ids[1]);
        return !tiles.includes(ids[1]) && !known;
      }, `page ${i} drops the page that left`);
    }
    // Close a page: the connection ends, and with it its place in the room.
    await pages[2].close();
    await waitFor(async () => (await tilesOf(pages[0])).length === 0, 'page 0 drops the closed page');
    const r = await waitFor(async () => {
      const x = (await rooms()).find((y) => y.name === 'leave');
      return x?.participants.length === 1 && x;
    }, '/api/rooms with one participant left');
    assert.equal(r.participants[0].participant, ids[0]);
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

test('relay only: a call through the built-in TURN server (?relay=1)', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) pages.push(await openRoom('relayed', '&relay=1'));
    const ids = await Promise.all(pages.map(participantId));
    const ice = await pages[0].evaluate(() => window.sbRoom.iceServers);
    assert.ok(ice.some((s) => [].concat(s.urls).some((u) => u.startsWith('turn:')) && s.username && s.credential), `join reply iceServers: ${JSON.stringify(ice)}`);
    await decoding(pages[0], [ids[1]], 'page 0');
    await decoding(pages[1], [ids[0]], 'page 1');
    for (const page of pages) {
      for (const name of ['publisher', 'subscriber']) {
        const pair = await waitFor(() => selectedPair(page, name), `${name} candidate pair`);
        assert.equal(pair.local.type, 'relay', `${name}: ${JSON.stringify(pair)}`);
      }
    }
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

test('TURN renewal in a relayed call: fresh credentials from room_ice, both connections restart ICE through the relay, and the video goes on', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) pages.push(await openRoom('renewed', '&relay=1'));
    const ids = await Promise.all(pages.map(participantId));
    await decoding(pages[0], [ids[1]], 'page 0 before');
    await decoding(pages[1], [ids[0]], 'page 1 before');
    const ufrags = () =>
      pages[0].evaluate(() => {
        const frag = (d) => d?.sdp.match(/a=ice-ufrag:(\S+)/)?.[1];
        const r = window.sbRoom;
        return { publisher: frag(r.pc('publisher').localDescription), subscriber: frag(r.pc('subscriber').remoteDescription) };
      });
    const before = await ufrags();
    // What the renewal timer does before turn_ttl runs out, now.
    const seen = await pages[0].evaluate(async () => {
      const r = window.sbRoom;
      const ev = [];
      r.on('iceServers', (e) => ev.push(`servers ${e.iceServers.some((s) => s.username && s.credential)}`));
      r.on('iceRestart', (e) => ev.push(`${e.pc} ${e.reason}`));
      const old = JSON.stringify(r.iceServers);
      await r.renew();
      return { ev, fresh: JSON.stringify(r.iceServers) !== old };
    });
    assert.deepEqual(seen.ev, ['servers true', 'subscriber renewal', 'publisher renewal']);
    assert.ok(seen.fresh, 'new credentials');
    const after = await waitFor(async () => {
      const u = await ufrags();
      return u.publisher !== before.publisher && u.subscriber !== before.subscriber && u;
    }, 'new ICE credentials on both connections');
    console.log(`# TURN renewal: ufrag publisher ${before.publisher} -> ${after.publisher}, subscriber ${before.subscriber} -> ${after.subscriber}`);
    for (const name of ['publisher', 'subscriber']) {
      const pair = await waitFor(() => selectedPair(pages[0], name), `${name} candidate pair after the restart`);
      assert.equal(pair.local.type, 'relay', `${name}: ${JSON.stringify(pair)}`);
    }
    await decoding(pages[0], [ids[1]], 'page 0 after the renewal');
    await decoding(pages[1], [ids[0]], 'page 1 after the renewal');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

test('peer to peer: a 1:1 call (?mode=p2p) where the server only relays signaling', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) pages.push(await openRoom('pair', '&mode=p2p'));
    const ids = await Promise.all(pages.map(participantId));
    await decoding(pages[0], [ids[1]], 'page 0');
    await decoding(pages[1], [ids[0]], 'page 1');
    // No connection to the SFU: one connection per page, and each one's
    // selected pair ends at the other browser's own candidate.
    const [a, b] = await Promise.all(pages.map((p) => waitFor(() => selectedPair(p, 'peer'), 'peer candidate pair')));
    assert.equal(a.remote.port, b.local.port, `pairs ${JSON.stringify(a)} / ${JSON.stringify(b)}`);
    assert.equal(b.remote.port, a.local.port, `pairs ${JSON.stringify(a)} / ${JSON.stringify(b)}`);
    for (const page of pages) {
      assert.deepEqual(await page.evaluate(() => [window.sbRoom.mode, !!window.sbRoom.pc('publisher'), !!window.sbRoom.pc('subscriber')]), ['p2p', false, false]);
    }
    const r = (await rooms()).find((x) => x.name === 'pair');
    assert.equal(r.mode, 'p2p');
    for (const p of r.participants) assert.deepEqual(p.tracks, [], 'the server carries no media of a P2P room');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

test('peer to peer through TURN: ?mode=p2p&relay=1 relays both browsers', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) pages.push(await openRoom('pair-relayed', '&mode=p2p&relay=1'));
    const ids = await Promise.all(pages.map(participantId));
    await decoding(pages[0], [ids[1]], 'page 0');
    await decoding(pages[1], [ids[0]], 'page 1');
    for (const page of pages) {
      const pair = await waitFor(() => selectedPair(page, 'peer'), 'peer candidate pair');
      assert.equal(pair.local.type, 'relay', JSON.stringify(pair));
    }
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

test('simulcast: a subscriber moves to a lower layer and back (display size, then a layer cap)', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    // The publisher's camera is 1280x720: Chromium sends three layers,
    // 320, 640 and 1280 wide. The viewer publishes nothing.
    const pub = await context.newPage();
    pages.push(pub);
    await pub.goto(`${srv.url}room.html?room=layers&video=1280x720`);
    await pub.waitForFunction(() => document.getElementById('status').dataset.state === 'joined', null, { timeout: WAIT });
    const pubId = await participantId(pub);
    await waitFor(async () => {
      const r = (await rooms()).find((x) => x.name === 'layers');
      const v = r?.participants[0]?.tracks.find((t) => t.kind === 'video');
      return v && v.layers.filter((l) => l.bitrate > 0).length >= 2;
    }, 'the publisher sending simulcast layers');

    const viewer = await openRoom('layers');
    pages.push(viewer);
    const width = async () => (await inbound(viewer)).find((s) => s.participant === pubId)?.frameWidth ?? 0;
    const track = await waitFor(() => viewer.evaluate((id) => [...(window.sbRoom.participants.get(id)?.tracks.values() ?? [])].find((t) => t.kind === 'video' && t.track)?.id, pubId), 'the remote video');
    await decoding(viewer, [pubId], 'viewer');

    // A big tile: the SDK asks for the layer that fits it (ResizeObserver).
    await viewer.evaluate((id) => {
      const v = document.querySelector(`.tile[data-participant="${id}"] video`);
      v.style.width = '1280px';
      v.style.height = '720px';
      v.closest('.tile').style.width = '1280px';
    }, pubId);
    const big = await waitFor(async () => {
      const w = await width();
      return w > 320 && w;
    }, 'a layer above the lowest for a big tile');

    // Cap the layer at the lowest (as for a capped link): 320 wide.
    await viewer.evaluate((t) => window.sbRoom.setLayer(t, { maxLayer: 0 }), track);
    await waitFor(async () => (await width()) === 320, 'the lowest layer (320 wide)');
    const layerPush = await viewer.evaluate((t) => window.sbRoom.participants.get(t.slice(0, t.lastIndexOf(':'))).tracks.get(t).layer, track);
    assert.equal(layerPush, 0, 'the server reported layer 0');

    // Lift the cap: back above the lowest layer.
    await viewer.evaluate((t) => window.sbRoom.setLayer(t, { maxLayer: 2 }), track);
    const up = await waitFor(async () => {
      const w = await width();
      return w > 320 && w;
    }, 'back above the lowest layer');
    assert.ok(up >= Math.min(big, 640), `up again to ${up} (big tile had ${big})`);
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

// startShapedServer runs a second server whose media port is reached only
// through a shaping UDP relay (udprelay.js): the SFU's socket is
// 127.0.0.1:PORT, the relay listens on 127.0.0.2:PORT, and the SFU
// announces 127.0.0.2 (webrtc_public_ip, as behind a 1:1 NAT), so every
// browser socket talks to the SFU through the relay. The relay binds
// first, on a free port, and the server takes the same port on the other
// address (tried again on another port if that one is taken).
async function startShapedServer() {
  let lastErr;
  for (let attempt = 0; attempt < 5; attempt++) {
    const relay = await startRelay({ listenAddress: '127.0.0.2' });
    relay.target = { address: '127.0.0.1', port: relay.port };
    try {
      const server = await harness.startServer(bin, '127.0.0.1:0', API_KEY, [
        '--webrtc-loopback',
        '--webrtc-udp-port', String(relay.port),
        '--webrtc-public-ip', '127.0.0.2',
      ]);
      await context.grantPermissions(['local-network-access', 'camera', 'microphone'], { origin: server.url.slice(0, -1) }).catch(() =>
        context.grantPermissions(['camera', 'microphone'], { origin: server.url.slice(0, -1) }),
      );
      return { relay, server };
    } catch (err) {
      relay.close();
      lastErr = err;
    }
  }
  throw lastErr;
}

test('bandwidth: a subscriber whose downlink is capped moves to the lowest layer and back up once the cap is lifted', { timeout: 2 * TEST_TIMEOUT }, async (t) => {
  const CAP = 250_000; // bit/s: under the middle layer (350 to 500 kbit/s), over the lowest (150 kbit/s) with audio
  const BW_WAIT = 120_000; // the estimate takes seconds to fall, and longer to grow without probing
  let shaped;
  try {
    shaped = await startShapedServer();
  } catch (err) {
    // Linux routes all of 127/8 to lo; other systems need the alias.
    if (err.code === 'EADDRNOTAVAIL') return t.skip('127.0.0.2 is not a local address here (add it to lo to run this test)');
    throw err;
  }
  const { relay, server } = shaped;
  const pages = [];
  let trace;
  try {
    const pub = await context.newPage();
    pages.push(pub);
    pub.on('pageerror', (err) => console.error(`page error: ${err.message}`));
    await pub.goto(`${server.url}room.html?room=capped&video=1280x720`);
    await pub.waitForFunction(() => document.getElementById('status').dataset.state === 'joined', null, { timeout: WAIT });
    const pubId = await participantId(pub);
    const video = await waitFor(async () => {
      const r = (await rooms(server)).find((x) => x.name === 'capped');
      const v = r?.participants.find((p) => p.participant === pubId)?.tracks.find((t) => t.kind === 'video');
      return v && v.layers.filter((l) => l.bitrate > 0).length === 3 && v;
    }, 'the publisher sending three simulcast layers');

    const viewer = await openRoom('capped', '', server);
    pages.push(viewer);
    const viewerId = await participantId(viewer);
    await decoding(viewer, [pubId], 'viewer');
    await viewer.evaluate((id) => {
      const v = document.querySelector(`.tile[data-participant="${id}"] video`);
      v.style.width = '1280px';
      v.style.height = '720px';
      v.closest('.tile').style.width = '1280px';
    }, pubId);

    // What the server forwards to the viewer, and its estimate.
    const seen = async () => {
      const r = (await rooms(server)).find((x) => x.name === 'capped');
      const me = r?.participants.find((p) => p.participant === viewerId);
      const sub = me?.subscriptions?.find((s) => s.track === video.track);
      const layers = r?.participants.find((p) => p.participant === pubId)?.tracks.find((t) => t.kind === 'video')?.layers ?? [];
      const width = (await inbound(viewer)).find((s) => s.participant === pubId)?.frameWidth ?? 0;
      const lost = await viewer.evaluate(async () => {
        let n = 0;
        (await window.sbRoom.pc('subscriber').getStats()).forEach((s) => {
          if (s.type === 'inbound-rtp') n += s.packetsLost ?? 0;
        });
        return n;
      });
      return { layer: sub?.layer ?? -1, target: sub?.target_layer ?? -1, estimate: me?.bandwidth_estimate ?? 0, width, lost, bitrates: layers.map((l) => l.bitrate) };
    };
    // until waits for what the server forwards and the page decodes to
    // satisfy ok, and says what it last saw when it never did.
    const until = async (ok, what) => {
      let last;
      try {
        return await waitFor(async () => {
          last = await seen();
          return ok(last) && last;
        }, what, BW_WAIT);
      } catch (err) {
        throw new Error(`${err.message}; last seen ${JSON.stringify(last)}`);
      }
    };
    const t0 = Date.now();
    trace = process.env.E2E_BW_TRACE && setInterval(async () => console.log(`# t=${((Date.now() - t0) / 1000).toFixed(1)} ${JSON.stringify(await seen().catch((e) => e.message))}`), 1000);
    const before = await until((s) => s.layer >= 1 && s.width > 320, 'a layer above the lowest for a big tile');
    console.log(`# uncapped: ${JSON.stringify(before)}`);

    // The viewer's subscribing connection goes through the relay: its
    // selected pair ends at the relay's address, and the relay has a
    // session named by the connection's ICE ufrag.
    const pair = await waitFor(() => selectedPair(viewer, 'subscriber'), 'the viewer subscriber candidate pair');
    assert.equal(pair.remote.address, '127.0.0.2', JSON.stringify(pair));
    const ufrag = await viewer.evaluate(() => window.sbRoom.pc('subscriber').localDescription.sdp.match(/a=ice-ufrag:(\S+)/)[1]);
    const mine = () => relay.sessions().filter((s) => s.ufrags.includes(ufrag));
    assert.ok(mine().length > 0, `relay sessions ${JSON.stringify(relay.sessions())}, want ufrag ${ufrag}`);

    // Cap what the SFU sends the viewer: the estimate falls, the server
    // moves the viewer to the lowest layer (at a keyframe), the page
    // decodes 320 wide and keeps decoding.
    relay.setRate(ufrag, CAP);
    const capped = await until((s) => s.layer === 0 && s.width === 320, `the lowest layer under a ${CAP / 1000} kbit/s cap`);
    console.log(`# capped at ${CAP / 1000} kbit/s: ${JSON.stringify(capped)}`);
    await decoding(viewer, [pubId], 'viewer under the cap');
    await waitFor(() => viewer.evaluate((t) => window.sbRoom.participants.get(t.slice(0, t.lastIndexOf(':'))).tracks.get(t).layer === 0, video.track), 'the layer push for layer 0');
    console.log(`# relay under the cap: ${JSON.stringify(mine())}`);

    // Lift the cap: the estimate grows again and the layer climbs.
    relay.setRate(ufrag, 0);
    const after = await until((s) => s.layer >= 1 && s.width > 320, 'a layer above the lowest once the cap is lifted');
    console.log(`# cap lifted: ${JSON.stringify(after)}`);
    await decoding(viewer, [pubId], 'viewer after the cap');
  } finally {
    clearInterval(trace);
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
    await harness.stopServer(server);
    relay.close();
  }
});

test('a page whose connection drops joins again and the call resumes', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    for (let i = 0; i < 2; i++) pages.push(await openRoom('rejoin'));
    const ids = await Promise.all(pages.map(participantId));
    await decoding(pages[0], [ids[1]], 'page 0');
    // The server drops page 1's connection (4003: reconnect); the server
    // removes it from the room, and the page joins again with a new id.
    const res = await fetch(`${srv.url}api/disconnect`, {
      method: 'POST',
      headers: { Authorization: `apikey ${API_KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ client: ids[1], reconnect: true }),
      signal: AbortSignal.timeout(WAIT),
    });
    assert.equal(res.status, 200);
    const again = await waitFor(async () => {
      const id = await pages[1].evaluate(() => window.sbRoom && !window.sbRoom.closed && window.sbRoom.participantId);
      return id && id !== ids[1] && id;
    }, 'page 1 in the room again');
    await waitFor(() => pages[0].evaluate((old) => !window.sbRoom.participants.has(old), ids[1]), 'page 0 drops the old participant');
    await decoding(pages[0], [again], 'page 0 after the rejoin');
    await decoding(pages[1], [ids[0]], 'page 1 after the rejoin');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});
