import assert from 'node:assert/strict';
import test from 'node:test';
import { DisconnectedError, MemoryOutboxStore, Outbox, ServerError } from '../../dist/switchboard.js';

const retryable = (err) => err instanceof DisconnectedError || (err instanceof ServerError && err.temporary);

// waitFor polls a condition with a generous bound (no timed assertion).
async function waitFor(cond, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('queued while offline, persisted, sent in order with their keys once online', async () => {
  const store = new MemoryOutboxStore();
  const box = new Outbox(store, 'S', retryable);
  const ps = [];
  for (let i = 0; i < 5; i++) ps.push(box.add('a', i));
  await box.loaded;
  await waitFor(() => store.entries.size === 5, 'persisted');
  assert.deepEqual(box.entries.map((e) => e.state), ['queued', 'queued', 'queued', 'queued', 'queued']);
  const sent = [];
  let offset = 0;
  box.setSender(async (e) => {
    sent.push([e.id, e.data]);
    return { offset: ++offset };
  });
  const acks = await Promise.all(ps);
  assert.deepEqual(acks.map((a) => a.offset), [1, 2, 3, 4, 5]);
  assert.deepEqual(sent.map((s) => s[1]), [0, 1, 2, 3, 4]);
  assert.equal(box.entries.length, 0);
  await waitFor(() => store.entries.size === 0, 'store emptied');
});

test('survives a reload: a new outbox on the same store sends the kept entries first, with the same keys', async () => {
  const store = new MemoryOutboxStore();
  const first = new Outbox(store, 'S', retryable);
  first.add('a', 'one').catch(() => {});
  first.add('a', 'two').catch(() => {});
  await waitFor(() => store.entries.size === 2, 'persisted');
  const keys = [...store.entries.values()].sort((x, y) => x.seq - y.seq).map((e) => e.id);
  first.close(new Error('page gone'));

  const second = new Outbox(store, 'S', retryable);
  const three = second.add('a', 'three');
  const other = new Outbox(store, 'OTHER', retryable); // another server's outbox is left alone
  await Promise.all([second.loaded, other.loaded]);
  assert.equal(other.entries.length, 0);
  const sent = [];
  second.setSender(async (e) => {
    sent.push([e.id, e.data]);
    return { offset: sent.length };
  });
  await three;
  assert.deepEqual(sent.map((s) => s[1]), ['one', 'two', 'three']);
  assert.deepEqual(sent.slice(0, 2).map((s) => s[0]), keys);
  assert.equal(second.entries.length, 0);
});

test('a send cut by a disconnect is sent again with the same key, and the channel keeps its order', async () => {
  const box = new Outbox(new MemoryOutboxStore(), 'S', retryable);
  box.retryDelay = 5;
  const p1 = box.add('a', 1);
  const p2 = box.add('a', 2);
  const attempts = [];
  let fail = true;
  box.setSender(async (e) => {
    attempts.push([e.id, e.data]);
    if (fail) {
      fail = false;
      box.setSender(null); // the connection went away mid-send
      throw new DisconnectedError();
    }
    return { offset: attempts.length };
  });
  await waitFor(() => attempts.length === 1 && box.entries.every((e) => e.state === 'queued'), 'requeued');
  box.setSender(async (e) => {
    attempts.push([e.id, e.data]);
    return { offset: attempts.length };
  });
  await Promise.all([p1, p2]);
  assert.deepEqual(attempts.map((a) => a[1]), [1, 1, 2]);
  assert.equal(attempts[0][0], attempts[1][0], 'same idempotency key on the resend');
});

test('a retryable refusal (503) is retried later; later entries of the channel wait for it', async () => {
  const box = new Outbox(new MemoryOutboxStore(), 'S', retryable);
  box.retryDelay = 5;
  const order = [];
  let refusals = 2;
  box.setSender(async (e) => {
    if (e.data === 1 && refusals-- > 0) throw new ServerError(503, 'broker unavailable');
    order.push(e.data);
    return { offset: order.length };
  });
  await Promise.all([box.add('a', 1), box.add('a', 2), box.add('b', 'x')]);
  assert.deepEqual(order.filter((d) => d !== 'x'), [1, 2]);
});

test('a refusal for good fails the entry and the next one goes on', async () => {
  const box = new Outbox(new MemoryOutboxStore(), 'S', retryable);
  const changes = [];
  box.onChange = () => changes.push(box.entries.map((e) => e.state).join(','));
  box.setSender(async (e) => {
    if (e.data === 'bad') throw new ServerError(403, 'permission denied');
    return { offset: 1 };
  });
  const bad = box.add('a', 'bad');
  const good = box.add('a', 'good');
  await assert.rejects(bad, /403/);
  await good;
  assert.deepEqual(box.entries.map((e) => e.state), ['failed']);
  box.dropFailed();
  assert.equal(box.entries.length, 0);
  assert.ok(changes.some((c) => c.includes('sent')));
});

test('shared: an id handed over twice is queued once; sync takes what another context stored, in seq order, and never what was acked here', async () => {
  const store = new MemoryOutboxStore();
  const tab = new Outbox(store, 'S', retryable, false); // a tab that does not send
  const holder = new Outbox(store, 'S', retryable, false);
  assert.equal(holder.entries.length, 0, 'no load without asking');
  const s1 = await tab.persist('a', 'one', 'k1');
  const s2 = await tab.persist('a', 'two', 'k2');
  assert.ok(s2 > s1);
  const p2 = holder.add('a', 'two', 'k2', s2); // k1's hand-over was lost
  const p2again = holder.add('a', 'two', 'k2', s2); // resent to the holder
  assert.equal(holder.entries.length, 1);
  await holder.sync();
  assert.deepEqual(holder.entries.map((e) => e.id), ['k1', 'k2'], 'in seq order');
  const sent = [];
  holder.setSender(async (e) => {
    sent.push(e.id);
    return { offset: sent.length };
  });
  assert.deepEqual(await Promise.all([p2, p2again]), [{ offset: 2 }, { offset: 2 }]);
  assert.deepEqual(sent, ['k1', 'k2']);
  // Acked here, maybe still in the store a moment: not taken again.
  await holder.sync();
  assert.equal(holder.entries.length, 0);
  assert.deepEqual(await holder.add('a', 'two', 'k2'), { offset: 2 }, 'an acked id answers at once');
  assert.deepEqual(sent, ['k1', 'k2']);
});
