#!/usr/bin/env node
// Glass-to-glass latency of live streams, per output: a publisher burns
// the wall-clock time into every frame as a barcode (e2e/glass.js), a
// real Chromium page plays the stream and reads the barcode back from each
// frame it presents, and the difference is the latency.
//
//	cd e2e && npm ci && cd .. && node bench/stream-latency.js [flags]
//
// It builds the server from this checkout (or takes SWITCHBOARD_BIN),
// starts it on loopback with the RTMP ingest on, and measures, one phase
// after the other:
//
//	rtmp  ffmpeg publishes a 1280x720 30 fps H.264 test pattern over RTMP;
//	      one Chromium page plays it over WHEP and over LL-HLS (hls.js,
//	      configured as /watch.html does), and ffmpeg's HLS demuxer reads
//	      it too (not low-latency: a non-browser figure);
//	whip  the Chromium page draws the barcode on a canvas and publishes it
//	      over WHIP (H.264); read the same three ways.
//
// Each phase waits (bounded) for every reader to decode the barcode,
// then measures for --duration, then prints the count, p50, p95, max and
// min per output, and stops everything. Flags:
//
//	--duration S     seconds measured per phase (default 30)
//	--phases LIST    rtmp,whip (default both)
//	--size WxH       the publishers' picture (16:9; default 1280x720)
//	--hls-catchup R  hls.js maxLiveSyncPlaybackRate (default 1, hls.js's
//	                 and /watch.html's: no catching up after a stall)
//	--json FILE      append one JSON line of the results to FILE
//
// Publisher, server and readers share the machine's clock. E2E_VERBOSE=1
// shows the server's log.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as harness from '../e2e/harness.js';
import * as glass from '../e2e/glass.js';

const API_KEY = 'stream-latency-key';
const READY_TIMEOUT = 90_000;

function parseArgs(argv) {
  const o = { duration: 30, phases: ['rtmp', 'whip'], json: '', size: '1280x720', hlsCatchup: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${a} needs a value`);
    if (a === '--duration') { o.duration = Number(v); i++; }
    else if (a === '--phases') { o.phases = v.split(',').filter(Boolean); i++; }
    else if (a === '--json') { o.json = v; i++; }
    else if (a === '--size') { o.size = v; i++; }
    else if (a === '--hls-catchup') { o.hlsCatchup = Number(v); i++; }
    else throw new Error(`unknown flag ${a} (see the comment at the top of ${path.basename(process.argv[1])})`);
  }
  if (!(o.hlsCatchup >= 1 && o.hlsCatchup <= 2)) throw new Error('--hls-catchup must be between 1 and 2');
  if (!(o.duration > 0)) throw new Error('--duration must be a positive number of seconds');
  const m = /^(\d+)x(\d+)$/.exec(o.size);
  if (!m || Number(m[1]) * 9 !== Number(m[2]) * 16 || Number(m[1]) < 320) throw new Error('--size must be WxH, 16:9, at least 320x180');
  for (const p of o.phases) if (!['rtmp', 'whip'].includes(p)) throw new Error(`unknown phase ${p}: rtmp or whip`);
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, what, timeout = READY_TIMEOUT) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await cond().catch(() => false);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(250);
  }
}

// ffmpegReader plays url with ffmpeg and samples each decoded frame's
// barcode at the moment its pixels reach this process.
function ffmpegReader(url, procs) {
  const out = { samples: [], unread: 0, frames: 0, err: '' };
  const p = spawn('ffmpeg', glass.ffmpegReaderArgs(url), { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(p);
  let buf = Buffer.alloc(0);
  p.stdout.on('data', (d) => {
    const now = Date.now();
    buf = Buffer.concat([buf, d]);
    while (buf.length >= glass.BLOCK_COUNT) {
      const got = glass.decodeLevels([...buf.subarray(0, glass.BLOCK_COUNT)]);
      buf = buf.subarray(glass.BLOCK_COUNT);
      out.frames++;
      if (got) out.samples.push({ ...got, shown: now });
      else out.unread++;
    }
  });
  p.stderr.on('data', (d) => { out.err = (out.err + d).slice(-2000); });
  out.proc = p;
  return out;
}

// pageReaders plays name over WHEP and LL-HLS in page and returns the
// readers of the barcode: frames presented over WHEP, decoded over WHEP,
// presented over LL-HLS.
async function pageReaders(page, how, name, o) {
  await page.evaluate(([p, rate]) => window.glass.play(p, { maxLiveSyncPlaybackRate: rate }), [`live/${name}`, o.hlsCatchup]);
  await waitFor(() => page.evaluate(() => window.glassRead.whepDecoded !== undefined), 'the WHEP video track');
  const reader = (key) => ({
    read: () => page.evaluate(async (k) => {
      const out = { ...window.glassRead[k] };
      if (k === 'whep') { // the WebRTC receiver's view: decoded and dropped frames, freezes, jitter buffer
        (await window.glassPC.getStats()).forEach((s) => {
          if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
          out.rtc = { decoded: s.framesDecoded, dropped: s.framesDropped, freezes: s.freezeCount, lost: s.packetsLost,
            jitterMs: s.jitterBufferEmittedCount ? Math.round((1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount) : undefined };
        });
      }
      return out;
    }, key),
    reset: () => page.evaluate((k) => { Object.assign(window.glassRead[k], { samples: [], unread: 0, frames: 0 }); }, key),
  });
  return {
    [`${how}->WHEP (Chromium, shown)`]: reader('whep'),
    [`${how}->WHEP (Chromium, decoded)`]: reader('whepDecoded'),
    [`${how}->LL-HLS (Chromium, hls.js)`]: reader('hls'),
  };
}

// streamLive waits for path in GET /api/streams.
function streamLive(srv, p) {
  return waitFor(async () => {
    const res = await fetch(`${srv.url}api/streams`, { headers: { Authorization: `apikey ${API_KEY}` } });
    const body = await res.json();
    return (body.result?.streams ?? []).some((s) => s.path === p);
  }, `${p} live`);
}

// segmentDurations reads the LL-HLS media playlist of streamPath and
// returns its segments' durations (s), which set how far behind players
// stay.
async function segmentDurations(srv, streamPath) {
  const base = `${srv.url}hls/${streamPath}/`;
  const main = await (await fetch(`${base}index.m3u8`)).text();
  const media = main.split('\n').find((l) => l.trim().endsWith('.m3u8') && !l.startsWith('#'));
  if (!media) throw new Error('no media playlist');
  const list = await (await fetch(base + media.trim())).text();
  return [...list.matchAll(/#EXTINF:([\d.]+)/g)].map((m) => Number(m[1]));
}

// phase publishes one stream (how: rtmp or whip), reads it three ways and
// returns the summaries per output.
async function phase(how, o, env) {
  const { context, srv, rtmpPort, procs } = env;
  const name = `glass-${how}`;
  const streamPath = `live/${name}`;
  const cleanup = [];
  // One page, in front, publishes (WHIP) and plays: Chromium paints the
  // videos of a page in the background only about once a second.
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`page error (${how}):`, err.message));
  cleanup.push(() => page.close().catch(() => {}));
  try {
    await page.goto(srv.url);
    await page.addScriptTag({ url: `${srv.url}vendor/hls.light.min.js` });
    if (how === 'rtmp') {
      const ff = spawn('ffmpeg', glass.ffmpegPublishArgs(`rtmp://127.0.0.1:${rtmpPort}/${streamPath}?key=${API_KEY}`, { size: o.size }), { stdio: ['ignore', 'ignore', 'pipe'] });
      procs.add(ff);
      let err = '';
      ff.stderr.on('data', (d) => { err = (err + d).slice(-2000); });
      cleanup.push(() => ff.kill('SIGKILL'));
      await streamLive(srv, streamPath).catch((e) => { throw new Error(`${e.message}; ffmpeg: ${err}`); });
    } else {
      await page.evaluate(([p, k, w, h]) => window.glass.publish(p, k, w, h), [streamPath, API_KEY, ...o.size.split('x').map(Number)]);
      await streamLive(srv, streamPath);
    }
    const readers = await pageReaders(page, how, name, o);
    const ff = ffmpegReader(`${srv.url}hls/${streamPath}/index.m3u8`, procs);
    cleanup.push(() => ff.proc.kill('SIGKILL'));
    readers[`${how}->HLS (ffmpeg)`] = { read: async () => ff, reset: async () => { ff.samples = []; ff.unread = 0; ff.frames = 0; } };
    for (const [label, r] of Object.entries(readers)) {
      await waitFor(async () => (await r.read()).samples.length >= 10, `${label}: barcodes read${label.includes('ffmpeg') ? ` (ffmpeg: ${ff.err})` : ''}`);
    }
    await sleep(3000); // let players settle at their steady delay
    await Promise.all(Object.values(readers).map((r) => r.reset()));
    await sleep(o.duration * 1000);
    const out = {};
    const seg = await segmentDurations(srv, streamPath).catch((e) => `unknown (${e.message})`);
    for (const [label, r] of Object.entries(readers)) {
      const got = await r.read();
      const lat = glass.latencies(got.samples);
      const last = got.samples[got.samples.length - 1];
      out[label] = { ...glass.summary(lat), frames: got.frames, unread: got.unread, ordered: glass.monotonic(got.samples),
        size: last?.w ? `${last.w}x${last.h}` : undefined, rtc: got.rtc, hls_segments: label.includes('HLS') ? seg : undefined };
    }
    if (how === 'rtmp') {
      // How late ffmpeg stamped frames against its -re schedule, from the
      // reader that sees them all: those frames' latency reads short by
      // that. (A canvas is stamped as it is drawn, so WHIP has no such
      // error; its timer only draws fewer frames when late.)
      out['rtmp: ffmpeg behind its -re schedule'] = glass.summary(glass.scheduleLag((await readers[`${how}->HLS (ffmpeg)`].read()).samples));
    }
    return out;
  } finally {
    for (const f of cleanup.reverse()) await f();
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-stream-latency-'));
  const procs = new Set();
  process.on('exit', () => { for (const p of procs) p.kill('SIGKILL'); });
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130)); // run the exit hooks: no process left behind
  let context;
  let srv;
  try {
    const bin = await harness.binary(tmpDir);
    const rtmpPort = await harness.freePort();
    srv = await harness.startServer(bin, '127.0.0.1:0', API_KEY, ['--webrtc-loopback', '--rtmp-addr', `127.0.0.1:${rtmpPort}`]);
    context = await harness.launchBrowser(tmpDir, harness.webrtcArgs);
    await context.grantPermissions(['local-network-access'], { origin: srv.url.slice(0, -1) }).catch(() => {});
    await context.addInitScript(glass.pageScript());
    const load0 = os.loadavg()[0];
    const started = new Date().toISOString();
    const results = {};
    for (const how of o.phases) Object.assign(results, await phase(how, o, { context, srv, rtmpPort, procs }));
    const load1 = os.loadavg()[0];
    console.log(`glass-to-glass latency, ${o.size}, ${o.duration} s per phase, hls.js catch-up ${o.hlsCatchup}, ${started}; load average ${load0.toFixed(2)} -> ${load1.toFixed(2)} on ${os.cpus().length} cores`);
    console.log('output                                  frames  read   p50    p95    max    min  (ms)  ordered  size');
    for (const [label, r] of Object.entries(results)) {
      const f = (x) => String(x ?? '-').padStart(6);
      console.log(`${label.padEnd(40)}${f(r.frames)}${f(r.n)} ${f(r.p50)} ${f(r.p95)} ${f(r.max)} ${f(r.min)}        ${String(r.ordered ?? '-').padEnd(8)} ${r.size ?? ''}${r.rtc ? ` ${JSON.stringify(r.rtc)}` : ''}${r.hls_segments ? ` segments ${JSON.stringify(r.hls_segments)} s` : ''}`);
    }
    if (o.json) {
      fs.appendFileSync(o.json, `${JSON.stringify({ started, duration_s: o.duration, size: o.size, hls_catchup: o.hlsCatchup, loadavg: [load0, load1], cores: os.cpus().length, results })}\n`);
    }
  } finally {
    await context?.close().catch(() => {});
    if (srv) await harness.stopServer(srv);
    harness.killAll();
    for (const p of procs) p.kill('SIGKILL');
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`stream-latency: ${err.message}`);
  process.exit(1);
});
