// sharedConnection between "tabs" of one process: Node's BroadcastChannel
// and a stand-in for navigator.locks (exclusive, queued in request order).
import assert from 'node:assert/strict';
import test from 'node:test';
import { Switchboard } from '../../dist/switchboard.js';
import { FakeLocks, FakeServer, waitFor } from './fakes.mjs';

function tabs(server, n) {
  const locks = new FakeLocks();
  const out = [];
  for (let i = 0; i < n; i++) {
    const got = [];
    const gaps = [];
    const c = new Switchboard('ws://fake:8000', {
      outbox: false,
      backoff: { base: 2, max: 20 },
      transports: ['websocket'],
      env: { WebSocket: server.WebSocket, locks, BroadcastChannel }, // no SharedWorker: the Web Locks way
    });
    const sub = c.subscribe('news', { onPublication: (p) => got.push(p.offset), onGap: (g) => gaps.push(g) });
    out.push({ c, sub, got, gaps });
  }
  return out;
}

const live = (server) => server.sockets.filter((s) => s.readyState === 1).length;

test('two tabs share one connection; both get every publication; the leader closing hands over without loss or duplicate', async (t) => {
  const server = new FakeServer();
  const [a, b] = tabs(server, 2);
  t.after(() => {
    a.c.close();
    b.c.close();
  });
  await Promise.all([a.sub.ready, b.sub.ready]);
  assert.equal(server.sockets.length, 1, 'one connection');
  let n = 0;
  for (; n < 50; n++) server.publish('news', n);
  await waitFor(() => a.got.length === 50 && b.got.length === 50, 'both tabs got 50');
  a.c.close(); // the leader goes mid-stream
  for (; n < 100; n++) server.publish('news', n); // while nobody holds the connection
  await waitFor(() => live(server) === 1 && server.sockets.length === 2, 'the other tab connects');
  for (; n < 150; n++) server.publish('news', n);
  await waitFor(() => b.got.length === 150, `b got 150 (has ${b.got.length})`);
  assert.deepEqual(b.got, Array.from({ length: 150 }, (_, i) => i + 1));
  assert.deepEqual(b.gaps, []);
  assert.equal(b.sub.duplicates >= 0, true);
  assert.equal(b.c.state, 'connected');
});

test('subscriptions are reference counted across tabs; publish from a follower goes through the leader', async (t) => {
  const server = new FakeServer();
  const [a, b] = tabs(server, 2);
  t.after(() => {
    a.c.close();
    b.c.close();
  });
  await Promise.all([a.sub.ready, b.sub.ready]);
  const got = [];
  const other = b.c.subscribe('other', { onPublication: (p) => got.push(p.data) });
  await other.ready;
  const ack = await b.c.publish('other', 'hi');
  assert.equal(ack.offset, 1);
  await waitFor(() => got.length === 1, 'b got its publication');
  const ws = server.current();
  assert.ok(ws.sent.some((c) => c.command === 'subscribe' && c.channel === 'other'));
  a.sub.unsubscribe(); // b still holds news
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(!ws.sent.some((c) => c.command === 'unsubscribe' && c.channel === 'news'), 'news kept for b');
  b.sub.unsubscribe();
  await waitFor(() => ws.sent.some((c) => c.command === 'unsubscribe' && c.channel === 'news'), 'news dropped');
});

test('three tabs, two hand-overs; a publish made while no tab leads is sent once by the next leader', async (t) => {
  const server = new FakeServer();
  const [a, b, c] = tabs(server, 3);
  t.after(() => {
    a.c.close();
    b.c.close();
    c.c.close();
  });
  await Promise.all([a.sub.ready, b.sub.ready, c.sub.ready]);
  let n = 0;
  for (; n < 20; n++) server.publish('news', n);
  a.c.close();
  const acked = c.c.publish('news', 'from c'); // waits for the next leader
  n++;
  for (; n < 40; n++) server.publish('news', n);
  await waitFor(() => server.sockets.length === 2 && live(server) === 1, 'b leads');
  assert.equal((await acked).offset > 20, true);
  b.c.close();
  for (; n < 60; n++) server.publish('news', n);
  await waitFor(() => server.sockets.length === 3 && live(server) === 1, 'c leads');
  await waitFor(() => c.got.length === 60, `c got 60 (has ${c.got.length})`);
  assert.deepEqual(c.got, Array.from({ length: 60 }, (_, i) => i + 1));
  assert.equal(server.channel('news').pubs.filter((p) => p.data === 'from c').length, 1);
  assert.deepEqual(c.gaps, []);
});

test('a follower gone without a bye (its tab lock released, as on a crash) has its channels released by the leader', async (t) => {
  const server = new FakeServer();
  const [a, b] = tabs(server, 2);
  t.after(() => {
    a.c.close();
    b.c.close();
  });
  await Promise.all([a.sub.ready, b.sub.ready]);
  await b.c.subscribe('only-b').ready;
  const ws = server.current();
  b.c.shared.tabLock(); // the browser releases a dead tab's locks; no bye was sent
  await waitFor(() => ws.sent.some((c) => c.command === 'unsubscribe' && c.channel === 'only-b'), 'only-b released');
  assert.ok(!ws.sent.some((c) => c.command === 'unsubscribe' && c.channel === 'news'), 'news kept for a');
});

test('a server-side subscription reaches both tabs of a leader tab\'s connection, and its end too; the leader going hands it over', async (t) => {
  const server = new FakeServer();
  const [a, b] = tabs(server, 2);
  t.after(() => {
    a.c.close();
    b.c.close();
  });
  await Promise.all([a.sub.ready, b.sub.ready]);
  const seen = { a: [], b: [] };
  for (const [name, tab] of [['a', a], ['b', b]]) {
    tab.c.on('subscribed', (e) => seen[name].push(`subscribed ${e.channel}`));
    tab.c.on('publication', (p) => seen[name].push(p.data));
    tab.c.on('unsubscribed', (e) => seen[name].push(`unsubscribed ${e.code}`));
  }
  server.serverSubscribe(server.current(), 'feed');
  await waitFor(() => seen.a.length === 1 && seen.b.length === 1, 'both tabs told');
  server.publish('feed', 1);
  await waitFor(() => seen.a.length === 2 && seen.b.length === 2, 'the publication in both tabs');
  a.c.close(); // the leader goes: b holds the connection and the subscription
  server.publish('feed', 2);
  await waitFor(() => live(server) === 1 && server.sockets.length === 2 && seen.b.length === 3, 'b connects and recovers');
  server.serverUnsubscribe(server.current(), 'feed');
  await waitFor(() => seen.b.length === 4, 'b told of the end');
  assert.deepEqual(seen.b, ['subscribed feed', 1, 2, 'unsubscribed 2000']);
});
