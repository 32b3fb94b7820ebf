// Server-side subscriptions (POST /api/subscribe and /api/unsubscribe) as
// the SDK sees them: a "subscribed" event with a Subscription that is then
// the client's, subscribed again with recovery after a reconnect, and an
// "unsubscribed" event when the server ends it.
import assert from 'node:assert/strict';
import test from 'node:test';
import { Switchboard } from '../../dist/switchboard.js';
import { FakeServer, waitFor } from './fakes.mjs';

function client(server, opts = {}) {
  return new Switchboard('ws://fake:8000', {
    outbox: false,
    backoff: { base: 2, max: 20 },
    transports: ['websocket'],
    sharedConnection: false,
    ...opts,
    env: { WebSocket: server.WebSocket },
  });
}

test('a server-side subscription reaches the app, survives reconnects with recovery, and ends with "unsubscribed"', async (t) => {
  const server = new FakeServer();
  const c = client(server);
  t.after(() => c.close());
  await waitFor(() => c.state === 'connected', 'connected');
  const events = [];
  const own = [];
  const all = [];
  c.on('subscribed', (e) => {
    events.push(`subscribed ${e.channel} ${JSON.stringify(e.data)} server=${e.subscription.server}`);
    e.subscription.setHandlers({ onPublication: (p) => own.push(p.data) });
  });
  c.on('unsubscribed', (e) => events.push(`unsubscribed ${e.channel} ${e.code} ${e.subscription.state}`));
  c.on('publication', (p) => all.push(p.data));
  server.publish('feed', 'before'); // not the client's: before its position
  server.serverSubscribe(server.current(), 'feed', { why: 'invited' });
  await waitFor(() => events.length === 1, 'subscribed');
  let n = 0;
  for (let cut = 0; cut < 5; cut++) {
    for (let i = 0; i < 3; i++) server.publish('feed', n++);
    const ws = server.current();
    ws.serverClose(cut % 2 ? 4003 : 1006);
    for (let i = 0; i < 2; i++) server.publish('feed', n++); // while away
    await waitFor(() => server.current() && server.current() !== ws && own.length === n, 'resubscribed and recovered');
  }
  assert.deepEqual(own, Array.from({ length: n }, (_, i) => i));
  assert.deepEqual(all, own);
  const resub = server.sockets.at(-1).sent.find((x) => x.command === 'subscribe' && x.channel === 'feed');
  assert.equal(resub.since.epoch, 'E1', 'the subscribe again carries since');

  const ws = server.current();
  server.serverUnsubscribe(ws, 'feed');
  await waitFor(() => events.length === 2, 'unsubscribed');
  assert.deepEqual(events, ['subscribed feed {"why":"invited"} server=true', 'unsubscribed feed 2000 unsubscribed']);
  assert.ok(!ws.sent.some((x) => x.command === 'unsubscribe'), 'no unsubscribe sent for what the server ended');
  server.publish('feed', 'after');
  // The channel is the app's to subscribe again.
  const again = c.subscribe('feed');
  await again.ready;
  assert.deepEqual(own, Array.from({ length: n }, (_, i) => i), 'nothing after the unsubscribed push');
});

test('a subscribed push with since delivers the recovered publications first; the default handlers come from serverSubscriptions', async (t) => {
  const server = new FakeServer();
  const got = [];
  const c = client(server, { serverSubscriptions: { onPublication: (p) => got.push(p.offset) } });
  t.after(() => c.close());
  await waitFor(() => c.state === 'connected', 'connected');
  for (let i = 0; i < 5; i++) server.publish('feed', i);
  server.serverSubscribe(server.current(), 'feed', undefined, { offset: 2, epoch: 'E1' });
  server.publish('feed', 5);
  await waitFor(() => got.length === 4, 'recovered and live');
  assert.deepEqual(got, [3, 4, 5, 6]);
});
