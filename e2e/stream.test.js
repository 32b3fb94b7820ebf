// Browser tests of live streams over WebRTC: /broadcast.html publishes
// Chromium's fake camera over WHIP, /watch.html plays it over WHEP (and
// over LL-HLS with hls.js), with the chat beside the video; an RTMP
// publish from ffmpeg plays over WHEP too, and the latency barcode of
// bench/stream-latency.js (glass.js) survives the trip. Against the real
// switchboard binary on loopback (webrtc_loopback).
//
// What only a browser shows is checked the honest way: getStats() of the
// viewer's connection, framesDecoded rising; for LL-HLS the video
// element's decoded frames. Every wait polls a condition within a bound;
// nothing is timed.
//
// E2E_VERBOSE=1 shows the server's log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as glass from './glass.js';
import * as harness from './harness.js';

const API_KEY = 'e2e-stream-key';
const { BUILD_TIMEOUT } = harness;
const WAIT = 60_000;
const TEST_TIMEOUT = 240_000;

let tmpDir;
let bin;
let context;
let srv;
let rtmpPort;
const procs = new Set();


before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-stream-'));
  bin = await harness.binary(tmpDir);
  context = await harness.launchBrowser(tmpDir, harness.webrtcArgs);
  rtmpPort = await harness.freePort();
  srv = await harness.startServer(bin, '127.0.0.1:0', API_KEY, [
    '--webrtc-loopback',
    '--rtmp-addr', `127.0.0.1:${rtmpPort}`,
    // The built-in TURN server, announced in the WHEP answers' Link headers.
    '--turn-addr', '127.0.0.1:0',
    '--turn-allowed-peers', '127.0.0.0/8',
  ]);
  await context.grantPermissions(['local-network-access', 'camera', 'microphone'], { origin: srv.url.slice(0, -1) }).catch(() =>
    context.grantPermissions(['camera', 'microphone'], { origin: srv.url.slice(0, -1) }),
  );
}, { timeout: BUILD_TIMEOUT + 60_000 });

after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await context?.close().catch(() => {});
  if (srv) await harness.stopServer(srv);
  harness.killAll();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// waitFor is harness.waitFor with this file's timeout and log tail.
function waitFor(cond, what, timeout = WAIT) {
  return harness.waitFor(cond, what, timeout, () => `\nserver log tail:\n${srv.log.slice(-20).join('\n')}`);
}

const t0 = Date.now();
// mark logs how long the steps take, with E2E_VERBOSE.
function mark(what) {
  if (process.env.E2E_VERBOSE) console.error(`${((Date.now() - t0) / 1000).toFixed(1)}s: ${what}`);
}

async function open(url) {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', url, err.message));
  await page.goto(srv.url + url);
  return page;
}

// framesDecoded is the viewer page's decoded video frames over WHEP.
function framesDecoded(page) {
  return page.evaluate(async () => {
    const pc = window.whepPC;
    if (!pc) return 0;
    let n = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.framesDecoded ?? 0;
    });
    return n;
  });
}

// playing waits for a viewer page to decode frames over WHEP, and for the
// count to keep rising.
async function playing(page, what) {
  await waitFor(async () => (await page.evaluate(() => document.getElementById('status').dataset.mode)) === 'whep', `${what}: WHEP mode`);
  const first = await waitFor(() => framesDecoded(page), `${what}: first decoded frames`);
  await waitFor(async () => (await framesDecoded(page)) > first + 10, `${what}: decoded frames rising`);
}

async function streams() {
  const res = await fetch(`${srv.url}api/streams`, { headers: { Authorization: `apikey ${API_KEY}` } });
  const body = await res.json();
  return body.result?.streams ?? body.streams;
}

test('WHIP from /broadcast.html (H.264): three WHEP viewers decode (one through TURN), the chat works, LL-HLS plays it', { timeout: TEST_TIMEOUT }, async () => {
  const pages = [];
  try {
    const pub = await open(`broadcast.html?stream=cam&key=${API_KEY}&codec=h264&autostart=1`);
    pages.push(pub);
    await waitFor(() => pub.evaluate(() => document.getElementById('status').dataset.state === 'live'), 'the broadcast live');
    mark('broadcast live');
    // The third viewer may use only TURN relay candidates: the TURN server
    // comes from the Link headers of the WHEP pre-flight.
    for (const q of ['', '', '&relay=1']) pages.push(await open(`watch.html?stream=cam${q}`));
    const viewers = pages.slice(1);
    await Promise.all(viewers.map((v, i) => playing(v, `viewer ${i}`)));
    mark('three viewers decoding');
    const relayed = await viewers[2].evaluate(async () => {
      const stats = await window.whepPC.getStats();
      let type = '';
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) type = stats.get(stats.get(s.selectedCandidatePairId).localCandidateId).candidateType;
      });
      return type;
    });
    assert.equal(relayed, 'relay', 'the relay-only viewer plays through TURN');
    const info = await waitFor(async () => (await streams()).find((s) => s.path === 'live/cam' && s.viewers?.whep === 3), '/api/streams with 3 WHEP viewers');
    assert.equal(info.publisher.protocol, 'whip');
    assert.deepEqual(info.tracks.map((t) => t.codec).sort(), ['h264', 'opus']);

    // The chat beside the video: viewer 0 writes, viewer 2 reads.
    await viewers[2].waitForFunction(() => window.document.getElementById('messages') !== null);
    await waitFor(() => viewers[0].evaluate(() => document.getElementById('message') !== null), 'chat form');
    await new Promise((r) => setTimeout(r, 500)); // let the subscriptions settle (not an assertion)
    await viewers[0].fill('#name', 'ann');
    await viewers[0].fill('#message', 'hello stream');
    await viewers[0].click('#send');
    await waitFor(() => viewers[2].evaluate(() => document.getElementById('messages').textContent.includes('ann: hello stream')), 'the chat message on another viewer');
    mark('chat');

    // LL-HLS from the same WHIP stream: H.264 muxed without transcoding.
    const hls = await open('watch.html?stream=cam&mode=hls');
    pages.push(hls);
    await waitFor(() => hls.evaluate(() => {
      const v = document.getElementById('video');
      const q = v.getVideoPlaybackQuality?.();
      return v.readyState >= 2 && q && q.totalVideoFrames > 10;
    }), 'LL-HLS frames decoded', 90_000);
    mark('LL-HLS');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
  }
});

test('RTMP from ffmpeg (H.264 + AAC) plays over WHEP: video passes through, AAC is not carried', { timeout: TEST_TIMEOUT }, async (t) => {
  // ffmpeg is the RTMP publisher: CI installs it; elsewhere its absence skips.
  const hasFfmpeg = process.env.PATH.split(path.delimiter).some((d) => fs.existsSync(path.join(d, 'ffmpeg')));
  if (!hasFfmpeg && !process.env.CI) return t.skip('no ffmpeg');
  const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-f', 'flv', `rtmp://127.0.0.1:${rtmpPort}/live/rtmpcam?key=${API_KEY}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.add(ff);
  let ffErr = '';
  ff.stderr.on('data', (d) => { ffErr += d; });
  let page;
  try {
    await waitFor(async () => (await streams()).some((s) => s.path === 'live/rtmpcam'), `the RTMP stream live (ffmpeg: ${ffErr})`);
    page = await open('watch.html?stream=rtmpcam');
    await playing(page, 'RTMP viewer');
    const audio = await page.evaluate(async () => {
      let n = 0;
      (await window.whepPC.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') n += s.packetsReceived ?? 0;
      });
      return n;
    });
    assert.equal(audio, 0, 'no audio is sent for an AAC track');
    const info = (await streams()).find((s) => s.path === 'live/rtmpcam');
    assert.equal(info.viewers.whep, 1, JSON.stringify(info));
  } finally {
    await page?.close().catch(() => {});
    ff.kill('SIGKILL');
    procs.delete(ff);
  }
});

test('the latency barcode encodes and decodes; garbage and frames without it read as nothing', () => {
  const now = Date.now();
  const cases = [
    { ms: 0, frame: 0 },
    { ms: 2 ** 32 - 1, frame: 255 },
    { ms: now, frame: 7 },
    { ms: now + 1, frame: 8 }, // Gray code: neighbours differ in one block
  ];
  for (const c of cases) {
    const got = glass.decodeLevels(glass.encodeLevels(c.ms, c.frame));
    assert.deepEqual(got, { ms: c.ms % 2 ** 32, frame: c.frame }, JSON.stringify(c));
    assert.equal(glass.unwrapMs(got.ms, c.ms + 300), c.ms, 'unwrapped with a reader clock a little later');
  }
  const a = glass.encodeLevels(now, 0);
  const b = glass.encodeLevels(now + 1, 0);
  assert.equal(a.filter((x, i) => x !== b[i]).length, 1, 'one block differs between t and t+1');
  // Not a barcode: flat, wrong length, sync blocks missing or low contrast.
  assert.equal(glass.decodeLevels(new Array(44).fill(128)), null);
  assert.equal(glass.decodeLevels([255, 0]), null);
  assert.equal(glass.decodeLevels(a.map((x, i) => (i === 1 ? 255 : x))), null);
  assert.equal(glass.decodeLevels(a.map((x) => 100 + x / 4)), null);
  // Random levels never throw; what decodes is in range.
  for (let k = 0; k < 2000; k++) {
    const levels = Array.from({ length: k % 50 }, () => Math.random() * 256);
    const got = glass.decodeLevels(levels);
    if (got) assert.ok(got.ms >= 0 && got.ms < 2 ** 32 && got.frame >= 0 && got.frame < 256);
  }
});

test('the latency barcode round-trips: ffmpeg burns the clock in over RTMP, Chromium reads it back over WHEP and LL-HLS', { timeout: TEST_TIMEOUT }, async (t) => {
  const hasFfmpeg = process.env.PATH.split(path.delimiter).some((d) => fs.existsSync(path.join(d, 'ffmpeg')));
  if (!hasFfmpeg && !process.env.CI) return t.skip('no ffmpeg');
  const ff = spawn('ffmpeg', glass.ffmpegPublishArgs(`rtmp://127.0.0.1:${rtmpPort}/live/glass?key=${API_KEY}`, { size: '640x360' }), { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.add(ff);
  let ffErr = '';
  ff.stderr.on('data', (d) => { ffErr += d; });
  const pages = [];
  try {
    await waitFor(async () => (await streams()).some((s) => s.path === 'live/glass'), `the RTMP stream live (ffmpeg: ${ffErr})`);
    for (const q of ['', '&mode=hls']) {
      const page = await context.newPage();
      pages.push(page);
      page.on('pageerror', (err) => console.error('page error:', err.message));
      await page.addInitScript(glass.pageScript());
      await page.goto(`${srv.url}watch.html?stream=glass${q}`);
    }
    const [whep, hls] = pages;
    await playing(whep, 'WHEP viewer');
    // Every decoded WebRTC frame, from the track, and the frames the
    // video elements present (fewer under load, but some).
    await whep.evaluate(() => {
      const track = window.whepPC.getReceivers().find((r) => r.track?.kind === 'video').track;
      window.dec = window.glass.watchTrack(track);
      window.shown = window.glass.watch(document.getElementById('video'));
    });
    await waitFor(() => hls.evaluate(() => document.getElementById('status').dataset.mode === 'hls'), 'LL-HLS mode');
    await hls.evaluate(() => { window.shown = window.glass.watch(document.getElementById('video')); });
    const read = (page, v) => page.evaluate((name) => window[name].samples, v);
    const dec = await waitFor(async () => { const s = await read(whep, 'dec'); return s.length >= 30 && s; }, 'WHEP: 30 decoded frames with the barcode');
    const shown = await waitFor(async () => { const s = await read(whep, 'shown'); return s.length >= 3 && s; }, 'WHEP: presented frames with the barcode');
    const hlsShown = await waitFor(async () => { const s = await read(hls, 'shown'); return s.length >= 30 && s; }, 'LL-HLS: 30 presented frames with the barcode', 120_000);
    for (const [what, s] of [['WHEP decoded', dec], ['WHEP shown', shown], ['LL-HLS shown', hlsShown]]) {
      assert.ok(glass.monotonic(s), `${what}: capture times and frame numbers only go forward: ${JSON.stringify(s.slice(0, 40))}`);
      const first = glass.unwrapMs(s[0].ms, s[0].shown);
      assert.ok(Math.abs(first - s[0].shown) < 60_000, `${what}: the capture time is this clock's (${first} against ${s[0].shown})`);
    }
    assert.ok(new Set(dec.map((s) => s.frame)).size > 20, 'the frame counter moves');
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
    ff.kill('SIGKILL');
    procs.delete(ff);
  }
});
