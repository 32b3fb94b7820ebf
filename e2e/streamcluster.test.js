// Browser test of a live stream across two nodes on one Redis: ffmpeg
// publishes over RTMP into node A, and /watch.html opened on node B plays
// it over WHEP and over LL-HLS (hls.js). B answers the WHEP offer and the
// LL-HLS reads with 307 to A (node_http_url), another origin: Chromium's
// fetch must follow the redirect with the offer, and the CORS headers of
// A must let the page read the answer.
//
// Skipped without ffmpeg or redis-server, except in CI. E2E_VERBOSE=1
// shows the servers' logs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from './harness.js';

const API_KEY = 'e2e-streamcluster-key';
const { BUILD_TIMEOUT } = harness;
const WAIT = 60_000;
const TEST_TIMEOUT = 240_000;

const onPath = (bin) => process.env.PATH.split(path.delimiter).some((d) => fs.existsSync(path.join(d, bin)));
const missing = ['ffmpeg', 'redis-server'].filter((b) => !onPath(b));

let tmpDir;
let context;
let nodeA;
let nodeB;
let rtmpPort;
let redis;
const procs = new Set();

before(async () => {
  if (missing.length > 0) return;
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-streamcluster-'));
  const bin = await harness.binary(tmpDir);
  context = await harness.launchBrowser(tmpDir, harness.webrtcArgs);
  redis = await harness.startRedis(tmpDir, 10_000);
  const portA = await harness.freePort();
  rtmpPort = await harness.freePort();
  const common = ['--webrtc-loopback', '--broker', redis.url];
  nodeA = await harness.startServer(bin, `127.0.0.1:${portA}`, API_KEY, [
    ...common, '--node-http-url', `http://127.0.0.1:${portA}`, '--rtmp-addr', `127.0.0.1:${rtmpPort}`,
  ]);
  nodeB = await harness.startServer(bin, '127.0.0.1:0', API_KEY, common);
  for (const srv of [nodeA, nodeB]) {
    await context.grantPermissions(['local-network-access'], { origin: srv.url.slice(0, -1) }).catch(() => {});
  }
}, { timeout: BUILD_TIMEOUT + 60_000 });

after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await context?.close().catch(() => {});
  for (const srv of [nodeA, nodeB]) if (srv) await harness.stopServer(srv);
  await redis?.stop();
  harness.killAll();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// waitFor is harness.waitFor with this file's timeout and log tail.
function waitFor(cond, what, timeout = WAIT) {
  return harness.waitFor(cond, what, timeout, () => '\n' + [nodeA, nodeB].filter(Boolean).map((s, i) => `node ${'AB'[i]}:\n${s.log.slice(-10).join('\n')}`).join('\n'));
}

// streams is GET /api/streams on srv.
async function streams(srv) {
  const res = await fetch(`${srv.url}api/streams`, { headers: { Authorization: `apikey ${API_KEY}` } });
  return (await res.json()).result.streams;
}

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

test('RTMP into node A plays on node B over WHEP and LL-HLS (307 to A)', { timeout: TEST_TIMEOUT }, async (t) => {
  if (missing.length > 0) {
    if (process.env.CI) throw new Error(`${missing.join(', ')} required in CI`);
    return t.skip(`no ${missing.join(', ')}`);
  }
  const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '25', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-f', 'flv', `rtmp://127.0.0.1:${rtmpPort}/live/far?key=${API_KEY}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.add(ff);
  let ffErr = '';
  ff.stderr.on('data', (d) => { ffErr += d; });
  const pages = [];
  try {
    const onB = await waitFor(async () => (await streams(nodeB)).find((s) => s.path === 'live/far'), `B listing A's stream (ffmpeg: ${ffErr})`);
    const onA = (await streams(nodeA)).find((s) => s.path === 'live/far');
    assert.equal(onB.node, onA.node, 'B names the node that took the publisher');

    const res = await fetch(`${nodeB.url}whep/live/far`, { method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(res.status, 307);
    assert.equal(res.headers.get('location'), `${nodeA.url}whep/live/far`);

    const page = await context.newPage();
    pages.push(page);
    page.on('pageerror', (err) => console.error('page error:', err.message));
    await page.goto(`${nodeB.url}watch.html?stream=far`);
    await waitFor(async () => (await page.evaluate(() => document.getElementById('status').dataset.mode)) === 'whep', 'WHEP mode on B');
    const first = await waitFor(() => framesDecoded(page), 'first decoded frames');
    await waitFor(async () => (await framesDecoded(page)) > first + 10, 'decoded frames rising');
    const whepOnA = await waitFor(async () => (await streams(nodeA)).find((s) => s.path === 'live/far' && s.viewers?.whep === 1), 'the WHEP viewer counted on A');
    assert.ok(whepOnA);

    const hls = await context.newPage();
    pages.push(hls);
    await hls.goto(`${nodeB.url}watch.html?stream=far&mode=hls`);
    await waitFor(() => hls.evaluate(() => {
      const v = document.getElementById('video');
      const q = v.getVideoPlaybackQuality?.();
      return v.readyState >= 2 && q && q.totalVideoFrames > 10;
    }), 'LL-HLS frames decoded through B', 90_000);
  } finally {
    await Promise.all(pages.map((p) => p.close().catch(() => {})));
    ff.kill('SIGKILL');
    procs.delete(ff);
  }
});
