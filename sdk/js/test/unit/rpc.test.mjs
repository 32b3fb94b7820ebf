import assert from 'node:assert/strict';
import test from 'node:test';
import { Switchboard, ServerError } from '../../dist/switchboard.js';
import { FakeServer } from './fakes.mjs';

test('rpc sends method and data, resolves with the backend data, rejects with its code', async (t) => {
  const server = new FakeServer();
  const c = new Switchboard('ws://fake:8000', {
    outbox: false,
    transports: ['websocket'],
    env: { WebSocket: server.WebSocket },
  });
  t.after(() => c.close());
  assert.deepEqual(await c.rpc('chat:history', { room: 'a' }), { method: 'chat:history', echo: { room: 'a' } });
  assert.deepEqual(await c.rpc('ping'), { method: 'ping', echo: null });
  const sent = server.sockets[0].sent.filter((x) => x.command === 'rpc');
  assert.deepEqual(sent[1].data, undefined, 'no data: no "data" field');
  await assert.rejects(c.rpc('refused'), (err) => err instanceof ServerError && err.code === 3404);
});
