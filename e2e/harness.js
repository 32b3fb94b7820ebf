// What every end-to-end test file needs: the switchboard binary (built from
// this checkout, or SWITCHBOARD_BIN), servers started on loopback and
// stopped, and headless Chromium (/usr/bin/chromium, or CHROMIUM_PATH). Every wait is bounded, and no server is
// left behind when the test process exits.

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const BUILD_TIMEOUT = 240_000; // a cold Go build cache is slow; a warm one takes seconds
const START_TIMEOUT = 10_000;
const STOP_TIMEOUT = 15_000;

const running = new Set(); // child processes to kill if we exit early

// Safety net: never leave a server behind, whatever happens to this process.
process.on('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});

// killAll kills every server still running.
export function killAll() {
  for (const proc of running) proc.kill('SIGKILL');
}

// binary returns the server binary: SWITCHBOARD_BIN, or one built into dir.
export async function binary(dir) {
  if (process.env.SWITCHBOARD_BIN) return process.env.SWITCHBOARD_BIN;
  const bin = path.join(dir, 'switchboard');
  await promisify(execFile)('go', ['build', '-o', bin, './cmd/switchboard'], {
    cwd: repoRoot,
    timeout: BUILD_TIMEOUT,
    killSignal: 'SIGKILL',
  });
  return bin;
}

// startServer runs "switchboard serve" on addr with the given API key (and
// any extra flags) and resolves once its log says where it listens.
export function startServer(bin, addr, apiKey, extraArgs = []) {
  const proc = spawn(bin, ['serve', '--addr', addr, '--api-key', apiKey, '--shutdown-timeout', '5s', ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(proc);
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  exited.then(() => running.delete(proc));
  const srv = { proc, exited, log: [], addr: '', url: '' };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`server did not report its address within ${START_TIMEOUT} ms`)), START_TIMEOUT);
    function fail(err) {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(new Error(`${err.message}\nserver log:\n${srv.log.join('\n')}`));
    }
    let partial = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      if (process.env.E2E_VERBOSE) process.stderr.write(chunk);
      const lines = (partial + chunk).split('\n');
      partial = lines.pop();
      for (const line of lines) {
        srv.log.push(line);
        const m = line.includes('switchboard listening') && line.match(/addr="?http:\/\/([^\s"]+)/);
        if (m && !srv.addr) {
          clearTimeout(timer);
          srv.addr = m[1];
          srv.url = `http://${m[1]}/`;
          resolve(srv);
        }
      }
    });
    proc.once('error', fail);
    exited.then((code) => {
      if (!srv.addr) fail(new Error(`server exited with ${code} before listening`));
    });
  });
}

// stopServer sends SIGTERM and waits for the process to exit, killing it if
// it takes too long.
export async function stopServer(srv) {
  if (srv.proc.exitCode !== null || srv.proc.signalCode !== null) return;
  srv.proc.kill('SIGTERM');
  const timer = setTimeout(() => srv.proc.kill('SIGKILL'), STOP_TIMEOUT);
  await srv.exited;
  clearTimeout(timer);
}

// chromiumPath is the Chromium the tests drive: CHROMIUM_PATH, or
// Debian's /usr/bin/chromium.
export const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// launchBrowser starts headless Chromium (chromiumPath) with a fresh
// profile in dir. The flags keep it off the network: without them it
// stalls on a closed one. extraArgs adds flags (webrtcArgs for calls).
export function launchBrowser(dir, extraArgs = []) {
  const profile = fs.mkdtempSync(path.join(dir, 'profile-'));
  if (!fs.existsSync(chromiumPath)) {
    throw new Error(`no Chromium at ${chromiumPath}: install it (Debian: apt-get install chromium) or set CHROMIUM_PATH`);
  }
  return chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  });
}

// webrtcArgs let Chromium hold calls on a machine with only loopback
// (see docs/webrtc.md): ICE candidates on 127.0.0.1, no mDNS names for
// them, and a fake camera and microphone that need no prompt.
export const webrtcArgs = [
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
];

// suite registers the hooks most test files share: before the file's
// tests, a temp dir, the binary, a browser and one server started with
// serverArgs (given to ready as {tmpDir, bin, context, srv}, the browser
// allowed to reach the server); after them, all stopped and removed.
export function suite(name, apiKey, serverArgs, ready) {
  const s = {};
  before(async () => {
    s.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `switchboard-e2e-${name}-`));
    s.bin = await binary(s.tmpDir);
    s.context = await launchBrowser(s.tmpDir);
    s.srv = await startServer(s.bin, '127.0.0.1:0', apiKey, serverArgs);
    await s.context.grantPermissions(['local-network-access'], { origin: s.srv.url.slice(0, -1) });
    ready(s);
  }, { timeout: BUILD_TIMEOUT + 30_000 });
  after(async () => {
    await s.context?.close().catch(() => {});
    if (s.srv) await stopServer(s.srv);
    killAll();
    if (s.tmpDir) fs.rmSync(s.tmpDir, { recursive: true, force: true });
  });
}

// freePort returns a TCP port free on 127.0.0.1 now.
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// waitFor polls cond (async allowed; a throw counts as not yet) every
// 250 ms until it returns a truthy value, which it returns. After timeout
// ms it fails, naming what it waited for, the last value or error, and
// the text tail() returns (a server's log, say).
export async function waitFor(cond, what, timeout, tail = () => '') {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})${tail()}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

// startRedis runs redis-server (REDIS_SERVER, or the one on PATH) on a
// free loopback port with its data in a new directory under dir, and
// resolves once it answers PING, within timeout ms. It is killed by
// stop() or when the test process exits.
export async function startRedis(dir, timeout) {
  const port = await freePort();
  const data = fs.mkdtempSync(path.join(dir, 'redis-'));
  const proc = spawn(process.env.REDIS_SERVER || 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', data, '--save', '', '--appendonly', 'no', '--daemonize', 'no'], { stdio: 'ignore' });
  const exited = new Promise((r) => proc.once('exit', r));
  process.on('exit', () => proc.kill('SIGKILL'));
  const deadline = Date.now() + timeout;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.write('PING\r\n');
      });
      c.once('data', (d) => {
        c.destroy();
        resolve(String(d).startsWith('+PONG'));
      });
      c.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('redis-server did not answer PING');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}
