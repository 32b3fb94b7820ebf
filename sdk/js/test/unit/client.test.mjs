import assert from 'node:assert/strict';
import test from 'node:test';
import { Switchboard } from '../../dist/switchboard.js';
import { FakeServer, fakeEventSource, waitFor } from './fakes.mjs';

const fast = { base: 2, max: 20 };

function client(server, opts = {}) {
  const states = [];
  const c = new Switchboard('ws://fake:8000', {
    outbox: false,
    backoff: fast,
    transports: ['websocket'],
    ...opts,
    env: { WebSocket: server.WebSocket, ...(opts.env ?? {}) },
  });
  c.on('state', (e) => states.push(`${e.state}${e.code ? ' ' + e.code : ''}`));
  return { c, states };
}

test('connects to …/ws, subscribes, receives; states go connecting → connected', async (t) => {
  const server = new FakeServer();
  const { c, states } = client(server);
  t.after(() => c.close());
  const got = [];
  const sub = c.subscribe('news', { onPublication: (p) => got.push(p) });
  await sub.ready;
  assert.equal(server.sockets[0].url, 'ws://fake:8000/ws');
  server.publish('news', { a: 1 });
  await waitFor(() => got.length === 1, 'publication');
  assert.deepEqual(got, [{ channel: 'news', data: { a: 1 }, offset: 1 }]);
  assert.deepEqual(states.slice(0, 2), ['connecting', 'connected']);
});

test('across reconnects (4003, network loss) every publication comes once, in order', async (t) => {
  const server = new FakeServer();
  const { c } = client(server);
  t.after(() => c.close());
  const got = [];
  const sub = c.subscribe('news', { onPublication: (p) => got.push(p.data) });
  await sub.ready;
  let n = 0;
  for (let cut = 0; cut < 20; cut++) {
    for (let i = 0; i < 5; i++) server.publish('news', n++);
    const ws = server.current();
    ws.serverClose(cut % 2 ? 4003 : 1006);
    for (let i = 0; i < 3; i++) server.publish('news', n++); // while away
    await waitFor(() => server.current() && server.current() !== ws && sub.state === 'subscribed', 'resubscribed');
  }
  await waitFor(() => got.length === n, `all ${n}`);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
  const resubs = server.sockets.slice(1).map((s) => s.sent.find((x) => x.command === 'subscribe'));
  assert.ok(resubs.every((s) => s.since && s.since.epoch === 'E1'), 'every resubscribe carries since');
});

test('a lost history (recovered:false) reaches onGap', async (t) => {
  const server = new FakeServer();
  const { c } = client(server);
  t.after(() => c.close());
  const gaps = [];
  const sub = c.subscribe('news', { onGap: (g) => gaps.push(g) });
  await sub.ready;
  server.channel('news').epoch = 'E2'; // the server lost the channel
  server.current().serverClose(4000);
  await waitFor(() => gaps.length === 1, 'gap');
  assert.equal(gaps[0].reason, 'unrecovered');
  assert.equal(gaps[0].channel, 'news');
});

test('4502 is not retried', async (t) => {
  const server = new FakeServer();
  server.tokenCheck = () => ({ error: 401, close: 4502 });
  const errors = [];
  const { c, states } = client(server, { token: 'bad' });
  t.after(() => c.close());
  c.on('error', (e) => errors.push(e));
  await waitFor(() => states.includes('disconnected 4502'), 'closed with 4502');
  await new Promise((r) => setTimeout(r, 100)); // room for a (wrong) retry to show
  assert.equal(server.sockets.length, 1);
  assert.equal(errors.length, 1);
  await assert.rejects(c.presence('news'), /4502/, 'a command does not wait for a connection that will not come');
});

test('close rejects commands waiting for a connection', async () => {
  const server = new FakeServer();
  server.refuseOpen = 1000;
  const { c } = client(server);
  const p = c.history('news');
  c.close();
  await assert.rejects(p, /closed/);
  await assert.rejects(c.publish('news', 1), /closed/);
});

test('4005 gets a new token from getToken, then reconnects with it', async (t) => {
  const server = new FakeServer();
  let n = 0;
  server.tokenCheck = (tok) => (tok === 't1' ? { error: 419, close: 4005 } : null);
  const { c } = client(server, { getToken: async () => `t${++n}` });
  t.after(() => c.close());
  const sub = c.subscribe('news');
  await sub.ready;
  assert.deepEqual(server.connects, ['t1', 't2']);
});

test('publish carries an idempotency key; the outbox empties on ack', async (t) => {
  const server = new FakeServer();
  const { c } = client(server);
  t.after(() => c.close());
  const ack = await c.publish('news', 'hi');
  assert.equal(ack.offset, 1);
  const cmd = server.sockets[0].sent.find((x) => x.command === 'publish');
  assert.match(cmd.idempotency_key, /^[0-9a-f]{32}$/);
  assert.equal(c.outbox.length, 0);
});

test('publishes made while disconnected are sent on reconnect, in order, once each', async (t) => {
  const server = new FakeServer();
  const { c } = client(server);
  t.after(() => c.close());
  await c.publish('news', 'first');
  const ws = server.current();
  ws.serverClose(4003);
  server.failOpen = 3; // a few failed attempts while the publishes wait
  const ps = [];
  for (let i = 0; i < 10; i++) ps.push(c.publish('news', i));
  assert.ok(c.outbox.length > 0);
  await Promise.all(ps);
  assert.deepEqual(server.channel('news').pubs.map((p) => p.data), ['first', ...Array.from({ length: 10 }, (_, i) => i)]);
  assert.equal(c.outbox.length, 0);
});

test('falls back to the next transport after the WebSocket fails to open twice', async (t) => {
  const server = new FakeServer();
  server.refuseOpen = 100; // the constructor always throws
  class FakeEventSource {
    static made = [];
    constructor(url) {
      this.url = url;
      this.listeners = {};
      FakeEventSource.made.push(this);
      setTimeout(() => this.emit('connected', { client: 's1', channels: [{ channel: 'news', offset: 0, epoch: 'E1' }] }, 'ID0'));
    }
    addEventListener(name, fn) {
      this.listeners[name] = fn;
    }
    emit(name, data, id = '') {
      this.listeners[name]?.({ data: JSON.stringify(data), lastEventId: id });
    }
    close() {}
  }
  const states = [];
  const c = new Switchboard('ws://fake:8000', {
    outbox: false,
    backoff: fast,
    env: { WebSocket: server.WebSocket, EventSource: FakeEventSource },
  });
  t.after(() => c.close());
  c.on('state', (e) => states.push(`${e.state}/${e.transport}`));
  const sub = c.subscribe('news');
  await sub.ready;
  assert.equal(c.transportName, 'sse');
  assert.equal(FakeEventSource.made[0].url, 'http://fake:8000/sse?channel=news');
  assert.deepEqual(states.filter((s) => s.startsWith('connecting')), ['connecting/websocket', 'connecting/websocket', 'connecting/sse']);
});

test('refresh before expiry goes over the open connection', async (t) => {
  const server = new FakeServer();
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const mint = (ttl) => `${b64({ alg: 'HS256' })}.${b64({ exp: Math.floor(Date.now() / 1000) + ttl })}.sig`;
  let calls = 0;
  const { c } = client(server, {
    getToken: async () => {
      calls++;
      return mint(calls === 1 ? 1 : 3600);
    },
  });
  t.after(() => c.close());
  await c.subscribe('news').ready;
  await waitFor(() => server.refreshes.length === 1, 'refresh');
  assert.equal(server.sockets.length, 1, 'no reconnect');
});

test('a connection that stops answering pings is replaced, and nothing is missed', async (t) => {
  const server = new FakeServer();
  const { c } = client(server, { pingInterval: 20 });
  t.after(() => c.close());
  const got = [];
  const sub = c.subscribe('news', { onPublication: (p) => got.push(p.data) });
  await sub.ready;
  server.publish('news', 1);
  const first = server.current();
  server.mute = true; // the network died: nothing comes back, and no close
  first.push = () => {}; // the old socket delivers nothing more
  server.publish('news', 2);
  await waitFor(() => server.sockets.length > 1, 'a new socket');
  server.mute = false;
  await waitFor(() => got.length === 2, 'both publications');
  assert.deepEqual(got, [1, 2]);
});

test('SSE: a new subscription re-opens the stream from the positions (no gap, no repeat)', async (t) => {
  const server = new FakeServer();
  const ES = fakeEventSource(server);
  const c = new Switchboard('ws://fake:8000', { outbox: false, backoff: fast, transports: ['sse'], env: { EventSource: ES } });
  t.after(() => c.close());
  const got = [];
  const gaps = [];
  const a = c.subscribe('a', { onPublication: (p) => got.push(p.offset), onGap: (g) => gaps.push(g) });
  await a.ready;
  for (let i = 0; i < 5; i++) server.publish('a', i);
  await waitFor(() => got.length === 5, 'first five');
  const first = ES.streams[0];
  first.paused = true; // it lags: 6..8 wait in its queue, and never come
  for (let i = 0; i < 3; i++) server.publish('a', i);
  const b = c.subscribe('b', { onGap: (g) => gaps.push(g) });
  await b.ready;
  assert.equal(ES.streams.length, 2);
  assert.ok(first.closed, 'the old stream is closed at once');
  const u = new URL(ES.streams[1].url);
  assert.deepEqual(u.searchParams.getAll('channel'), ['a', 'b']);
  assert.deepEqual(u.searchParams.getAll('since'), ['5:E1', ''], 'a from its position, b from now');
  for (let i = 0; i < 2; i++) server.publish('a', i);
  await waitFor(() => got.length === 10, 'all ten');
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(gaps, []);
});

test('SSE: a position of another epoch reaches onGap', async (t) => {
  const server = new FakeServer();
  const ES = fakeEventSource(server);
  const c = new Switchboard('ws://fake:8000', { outbox: false, backoff: fast, transports: ['sse'], env: { EventSource: ES } });
  t.after(() => c.close());
  const gaps = [];
  const got = [];
  const a = c.subscribe('a', { onGap: (g) => gaps.push(g), onPublication: (p) => got.push(p.offset) });
  await a.ready;
  server.publish('a', 1);
  await waitFor(() => got.length === 1, 'one');
  server.channel('a').epoch = 'E2';
  server.channel('a').pubs = [];
  ES.streams[0].onerror();
  await waitFor(() => gaps.length === 1, 'a gap');
  assert.equal(gaps[0].reason, 'unrecovered');
  assert.equal(gaps[0].epoch, 'E2');
  server.publish('a', 'new');
  await waitFor(() => got.length === 2, 'the next one');
  assert.deepEqual(got, [1, 1]);
});

test('SSE: more than 16 subscriptions take more streams', async (t) => {
  const server = new FakeServer();
  const ES = fakeEventSource(server);
  const c = new Switchboard('ws://fake:8000', { outbox: false, backoff: fast, transports: ['sse'], env: { EventSource: ES } });
  t.after(() => c.close());
  const got = [];
  const subs = [];
  for (let i = 0; i < 20; i++) subs.push(c.subscribe(`c${i}`, { onPublication: (p) => got.push(p.channel) }));
  await Promise.all(subs.map((s) => s.ready));
  const open = ES.streams.filter((s) => !s.closed);
  assert.equal(open.length, 2);
  assert.deepEqual(open.map((s) => s.channels.length).sort(), [16, 4]);
  server.publish('c19', 1);
  server.publish('c0', 1);
  await waitFor(() => got.length === 2, 'both');
});

test('on a fallback, the WebSocket is probed later and used again once it opens, resuming from the position', async (t) => {
  const server = new FakeServer();
  server.refuseOpen = 2; // blocked for the first two attempts only
  const ES = fakeEventSource(server);
  const c = new Switchboard('ws://fake:8000', { outbox: false, backoff: fast, upgradeAfter: 30, env: { WebSocket: server.WebSocket, EventSource: ES } });
  t.after(() => c.close());
  const got = [];
  const sub = c.subscribe('news', { onPublication: (p) => got.push(p.data) });
  await sub.ready;
  assert.equal(c.transportName, 'sse');
  server.publish('news', 1);
  await waitFor(() => c.transportName === 'websocket' && c.state === 'connected' && sub.state === 'subscribed', 'back on websocket');
  server.publish('news', 2);
  await waitFor(() => got.length === 2, 'both');
  assert.deepEqual(got, [1, 2]);
  assert.ok(ES.streams.every((s) => s.closed), 'the SSE stream is closed');
});
