// sharedConnection through a SharedWorker, in one process: the worker's
// Hub (from the worker bundle) runs here, and each "tab" reaches it over a
// MessageChannel, as a page reaches a SharedWorker over its port. Tested:
// one connection per server and identity, subscriptions counted per tab,
// a tab gone with a bye, without one (its lock released, or silence), the
// worker asking a tab for a token, and a worker that dies and comes back
// with nothing published twice or lost.
import assert from 'node:assert/strict';
import test from 'node:test';
import { Hub, MemoryOutboxStore, Switchboard, serverOf } from '../../dist/switchboard.js';
import { FakeLocks, FakeServer, waitFor } from './fakes.mjs';

// browser gives the tabs of one browser: a SharedWorker class whose
// instances are Hubs keyed by name (as the browser keys shared workers),
// shared Web Locks, and an outbox store both tabs and worker use (as they
// share one IndexedDB).
function browser(server, { locks = true, silence } = {}) {
  const b = {
    locks: locks ? new FakeLocks() : undefined,
    store: new MemoryOutboxStore(),
    hubs: new Map(), // name -> { hub, ports }
    tabs: [],
  };
  b.SharedWorker = class FakeSharedWorker {
    constructor(url, opts) {
      assert.equal(opts.type, 'module');
      let w = b.hubs.get(opts.name);
      if (!w) {
        const hub = new Hub(serverOf(opts.name), { locks: b.locks, silence, env: { WebSocket: server.WebSocket }, outbox: b.store, sharedTimings: { gather: 10 } });
        w = { hub, ports: [] };
        b.hubs.set(opts.name, w);
      }
      const { port1, port2 } = new MessageChannel();
      w.hub.connect(port2);
      w.ports.push(port2);
      this.port = port1;
    }
    addEventListener() {}
  };
  b.tab = (opts = {}) => {
    const got = [];
    const gaps = [];
    const c = new Switchboard('ws://fake:8000', {
      backoff: { base: 2, max: 20 },
      transports: ['websocket'],
      workerUrl: 'http://fake:8000/sdk/switchboard-worker.js',
      outbox: b.store,
      sharedTimings: { ping: 100 },
      env: { WebSocket: server.WebSocket, locks: b.locks, SharedWorker: b.SharedWorker },
      ...opts,
    });
    const sub = c.subscribe('news', { onPublication: (p) => got.push(p.offset), onGap: (g) => gaps.push(g) });
    const t = { c, sub, got, gaps };
    b.tabs.push(t);
    return t;
  };
  // kill stops a worker as a crash would: its connection and ports go.
  b.kill = (name) => {
    const w = b.hubs.get(name);
    b.hubs.delete(name);
    w.hub.close();
    for (const p of w.ports) p.close();
  };
  b.close = () => {
    for (const t of b.tabs) t.c.close();
    for (const name of [...b.hubs.keys()]) b.kill(name);
  };
  return b;
}

const live = (server) => server.sockets.filter((s) => s.readyState === 1).length;
const sentOn = (server, pred) => server.sockets.flatMap((s) => s.sent).filter(pred);

test('two tabs share the worker\'s one connection; subscriptions are counted per tab; a tab closing releases only its own', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  t.after(() => br.close());
  const a = br.tab();
  const b = br.tab();
  await Promise.all([a.sub.ready, b.sub.ready]);
  assert.equal(server.sockets.length, 1, 'one connection');
  assert.equal(br.hubs.size, 1, 'one worker');
  assert.equal(a.c.clientId, b.c.clientId);
  const onlyA = a.c.subscribe('only-a');
  await onlyA.ready;
  for (let n = 0; n < 50; n++) server.publish('news', n);
  await waitFor(() => a.got.length === 50 && b.got.length === 50, 'both tabs got 50');
  // A publish from either tab goes over the one connection.
  assert.equal((await b.c.publish('news', 'from b')).offset, 51);
  assert.equal((await a.c.publish('news', 'from a')).offset, 52);
  await waitFor(() => a.got.length === 52 && b.got.length === 52, 'both got both');

  b.sub.unsubscribe(); // a still holds news
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(sentOn(server, (c) => c.command === 'unsubscribe').length, 0, 'news kept for a');
  a.c.close(); // a goes (bye): only-a and news are released
  await waitFor(() => sentOn(server, (c) => c.command === 'unsubscribe').length === 2, 'a\'s channels released');
  assert.deepEqual(sentOn(server, (c) => c.command === 'unsubscribe').map((c) => c.channel).sort(), ['news', 'only-a']);
  assert.equal(live(server), 1, 'the connection stays for b');
  assert.deepEqual(a.got, Array.from({ length: 52 }, (_, i) => i + 1));
  assert.deepEqual([...a.gaps, ...b.gaps], []);
});

test('a tab gone without a bye is dropped when its Web Lock is released, and its subscriptions with it', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  t.after(() => br.close());
  const a = br.tab();
  const b = br.tab({ sharedTimings: { ping: 60_000 } });
  await Promise.all([a.sub.ready, b.sub.ready]);
  await b.c.subscribe('only-b').ready;
  const [{ hub }] = br.hubs.values();
  assert.equal(hub.tabs.size, 2);
  // b "crashes": no bye, no more messages; the browser releases its lock.
  b.c.shared.tabLock();
  await waitFor(() => hub.tabs.size === 1, 'b dropped');
  await waitFor(() => sentOn(server, (c) => c.command === 'unsubscribe' && c.channel === 'only-b').length === 1, 'only-b released');
  assert.equal(sentOn(server, (c) => c.command === 'unsubscribe' && c.channel === 'news').length, 0, 'news kept for a');
  server.publish('news', 'x');
  await waitFor(() => a.got.length === 1, 'a goes on');
});

test('without Web Locks a silent tab is dropped after the silence, and joins again when it speaks: resubscribed, what it missed meanwhile reported as a gap, then every publication', async (t) => {
  const server = new FakeServer();
  const br = browser(server, { locks: false, silence: 1000 });
  t.after(() => br.close());
  const a = br.tab();
  const b = br.tab();
  await Promise.all([a.sub.ready, b.sub.ready]);
  await b.c.subscribe('only-b').ready;
  const [{ hub }] = br.hubs.values();
  const bTab = b.c.shared.tab;
  // b freezes: its pings stop.
  clearInterval(b.c.shared.ping);
  await waitFor(() => !hub.tabs.has(bTab), 'b dropped');
  await waitFor(() => sentOn(server, (c) => c.command === 'unsubscribe' && c.channel === 'only-b').length === 1, 'only-b released');
  for (let n = 0; n < 5; n++) server.publish('news', n);
  // b thaws: its next message gets a hello, and it joins with its positions.
  b.c.shared.bus.post({ t: 'ping', tab: b.c.shared.tab });
  await waitFor(() => hub.tabs.has(bTab), 'b back');
  await waitFor(() => sentOn(server, (c) => c.command === 'subscribe' && c.channel === 'only-b').length === 2, 'only-b subscribed again');
  for (let n = 5; n < 10; n++) server.publish('news', n);
  await waitFor(() => a.got.length === 10 && b.got.at(-1) === 10, `both got to 10 (a ${a.got.length}, b ${JSON.stringify(b.got)})`);
  assert.deepEqual(a.got, Array.from({ length: 10 }, (_, i) => i + 1));
  // What b was not there for (some of 1..5, or none if it was back before
  // they reached the worker) is a gap: never silent, never twice.
  assert.ok(b.gaps.length <= 1, JSON.stringify(b.gaps));
  const from = b.gaps.length ? b.gaps[0].offset + 1 : 1;
  if (b.gaps.length) assert.equal(b.gaps[0].reason, 'unrecovered');
  assert.ok(from <= 6, `the gap ends at ${from - 1}`);
  assert.deepEqual(b.got, Array.from({ length: 11 - from }, (_, i) => from + i));
});

test('tabs of different users never share: one worker and one connection per identity', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  t.after(() => br.close());
  const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;
  const alice1 = br.tab({ token: jwt({ sub: 'alice', exp: 2e9 }) });
  const alice2 = br.tab({ token: jwt({ sub: 'alice', exp: 2e9 + 60 }) }); // a later token of alice
  const bobToken = jwt({ sub: 'bob', exp: 2e9 });
  const bob = br.tab({ token: bobToken });
  await Promise.all([alice1.sub.ready, alice2.sub.ready, bob.sub.ready]);
  assert.equal(br.hubs.size, 2);
  assert.equal(server.sockets.length, 2);
  assert.equal(alice1.c.clientId, alice2.c.clientId);
  assert.deepEqual(server.connects.map((tok) => JSON.parse(Buffer.from(tok.split('.')[1], 'base64url')).sub).sort(), ['alice', 'bob']);
  // The outbox too is per identity: bob's connection never sends what
  // alice's tabs stored (here, a publish whose answer never comes).
  server.noReply = true;
  alice1.c.publish('mine', 'from alice').catch(() => {});
  await waitFor(() => sentOn(server, (c) => c.command === 'publish').length === 1 && br.store.entries.size === 1, 'alice\'s publish stored and sent');
  const bobHub = [...br.hubs.values()].find((w) => w.hub.client.token === bobToken).hub;
  await bobHub.client.box.sync();
  assert.equal(bobHub.client.outbox.length, 0);
});

test('the worker asks a tab for a token (functions cannot cross a port), and another tab when that one goes', async (t) => {
  const server = new FakeServer();
  let calls = 0;
  server.tokenCheck = (tok) => (tok === 'old' ? { error: 419, close: 4005 } : null);
  const br = browser(server);
  t.after(() => br.close());
  const a = br.tab({ token: 'old', getToken: async () => `a${++calls}` });
  await a.sub.ready;
  assert.deepEqual(server.connects, ['old', 'a1'], 'the expired token replaced through tab a');
  // b carries the same (opaque) token: the same identity, the same worker.
  let bCalls = 0;
  const b = br.tab({ token: 'old', getToken: async () => `b${++bCalls}` });
  await b.sub.ready;
  assert.equal(br.hubs.size, 1);
  // a goes; the next refresh is asked of b.
  a.c.close();
  const [{ hub }] = br.hubs.values();
  await waitFor(() => hub.tabs.size === 1, 'a dropped');
  server.tokenCheck = () => null;
  server.current().serverClose(4005, 'token expired');
  await waitFor(() => server.connects.length === 3, 'reconnected');
  assert.equal(server.connects[2], 'b1');
  assert.equal(calls, 1);
});

test('a worker that dies is started again by the tabs; publishes it had not had answered are sent once each, in order', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  t.after(() => br.close());
  const a = br.tab();
  const b = br.tab();
  await Promise.all([a.sub.ready, b.sub.ready]);
  const [name] = br.hubs.keys();
  // The server publishes the first but its answer is lost (the others
  // wait behind it: one at a time per channel), then the worker dies.
  server.noReply = true;
  const acks = [];
  for (let i = 0; i < 10; i++) (i % 2 ? a : b).c.publish('out', i).then((r) => acks.push(r.offset), () => {});
  await waitFor(() => server.channel('out').pubs.length === 1, 'the first published');
  br.kill(name);
  server.noReply = false;
  // The tabs miss their pongs, start the worker again and join it.
  await waitFor(() => br.hubs.size === 1 && live(server) === 1, 'a new worker connected');
  await waitFor(() => acks.length === 10, `all acked (${acks.length})`);
  const data = server.channel('out').pubs.map((p) => p.data);
  assert.equal(data.length, 10, `none twice: ${JSON.stringify(data)}`);
  assert.equal(new Set(data).size, 10, `none lost: ${JSON.stringify(data)}`);
  // Each tab's own publishes in its order.
  assert.deepEqual(data.filter((d) => d % 2 === 1), [1, 3, 5, 7, 9]);
  assert.deepEqual(data.filter((d) => d % 2 === 0), [0, 2, 4, 6, 8]);
  await waitFor(() => br.store.entries.size === 0, 'the store emptied');
  // Subscriptions went on too.
  for (let n = 0; n < 5; n++) server.publish('news', n);
  await waitFor(() => a.got.length === 5 && b.got.length === 5, 'both got 5');
});

test('a worker that cannot start (script not loading) leaves the tabs to the Web Locks way', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  const locks = br.locks;
  class BrokenWorker {
    constructor() {
      const { port1 } = new MessageChannel();
      this.port = port1;
      this.listeners = [];
      setTimeout(() => this.listeners.forEach((f) => f(new Event('error'))), 5);
    }
    addEventListener(name, f) {
      if (name === 'error') this.listeners.push(f);
    }
  }
  const mk = () => br.tab({ env: { WebSocket: server.WebSocket, locks, SharedWorker: BrokenWorker, BroadcastChannel } });
  const a = mk();
  const b = mk();
  t.after(() => br.close());
  await Promise.all([a.sub.ready, b.sub.ready]);
  assert.equal(server.sockets.length, 1, 'one connection, held by a leader tab');
  assert.equal(br.hubs.size, 0);
  server.publish('news', 'x');
  await waitFor(() => a.got.length === 1 && b.got.length === 1, 'both got it');
});

test('join and leave pushes, ephemeral publishes and the attempt of state events work in every sharing tab', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  t.after(() => br.close());
  const a = br.tab();
  const b = br.tab();
  await Promise.all([a.sub.ready, b.sub.ready]);
  const seen = { a: [], b: [] };
  const ra = a.c.subscribe('room', { onJoin: (i) => seen.a.push(`join ${i.client}`), onLeave: (i) => seen.a.push(`leave ${i.client}`) });
  const rb = b.c.subscribe('room', { onJoin: (i) => seen.b.push(`join ${i.client}`), onLeave: (i) => seen.b.push(`leave ${i.client}`) });
  await Promise.all([ra.ready, rb.ready]);
  const ws = server.current();
  ws.push({ channel: 'room', join: { client: 'n1-9' } });
  ws.push({ channel: 'room', leave: { client: 'n1-9' } });
  await waitFor(() => seen.a.length === 2 && seen.b.length === 2, 'both tabs');
  assert.deepEqual(seen.a, ['join n1-9', 'leave n1-9']);
  assert.deepEqual(seen.b, ['join n1-9', 'leave n1-9']);
  assert.deepEqual(await b.c.publish('typing', 'now', { ephemeral: true }), { offset: 1 });
  const states = [];
  b.c.on('state', (e) => states.push(e));
  server.failOpen = 1;
  ws.serverClose(4003);
  await waitFor(() => states.some((e) => e.state === 'connected'), 'reconnected');
  const d = states.find((e) => e.state === 'disconnected');
  assert.equal(d.attempt, 1);
  assert.equal(typeof d.delay, 'number');
  assert.ok(states.some((e) => e.state === 'connecting' && e.attempt === 2), JSON.stringify(states));
});

test('a server-side subscription reaches every tab of the shared connection, across a reconnect, and its end too', async (t) => {
  const server = new FakeServer();
  const br = browser(server);
  t.after(() => br.close());
  const a = br.tab();
  const b = br.tab();
  await Promise.all([a.sub.ready, b.sub.ready]);
  const seen = { a: [], b: [] };
  for (const [name, tab] of [['a', a], ['b', b]]) {
    tab.c.on('subscribed', (e) => seen[name].push(`subscribed ${e.channel} ${e.data.why}`));
    tab.c.on('publication', (p) => seen[name].push(p.data));
    tab.c.on('unsubscribed', (e) => seen[name].push(`unsubscribed ${e.code}`));
  }
  server.serverSubscribe(server.current(), 'feed', { why: 'invited' });
  await waitFor(() => seen.a.length === 1 && seen.b.length === 1, 'both tabs told');
  server.publish('feed', 1);
  await waitFor(() => seen.a.length === 2 && seen.b.length === 2, 'the publication in both tabs');
  const ws = server.current();
  ws.serverClose(4003);
  server.publish('feed', 2); // while away
  await waitFor(() => seen.a.length === 3 && seen.b.length === 3, 'recovered in both tabs');
  assert.notEqual(server.current(), ws);
  server.serverUnsubscribe(server.current(), 'feed');
  await waitFor(() => seen.a.length === 4 && seen.b.length === 4, 'both tabs told of the end');
  for (const s of [seen.a, seen.b]) assert.deepEqual(s, ['subscribed feed invited', 1, 2, 'unsubscribed 2000']);
  assert.equal(live(server), 1, 'one connection throughout');
});
