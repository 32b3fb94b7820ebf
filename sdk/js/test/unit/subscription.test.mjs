import assert from 'node:assert/strict';
import test from 'node:test';
import { Subscription } from '../../dist/switchboard.js';

function sub() {
  const got = [];
  const gaps = [];
  const s = new Subscription('news', { onPublication: (p) => got.push(p.offset), onGap: (g) => gaps.push(g) }, () => {});
  return { s, got, gaps };
}
const pub = (offset) => ({ channel: 'news', data: offset, offset });

test('first subscribe sets the position; publications after it are delivered once, in order', async () => {
  const { s, got, gaps } = sub();
  s.subscribed({ offset: 10, epoch: 'E' }, undefined);
  await s.ready;
  for (const o of [9, 10, 11, 12, 12, 11, 13]) s.deliver(pub(o));
  assert.deepEqual(got, [11, 12, 13]);
  assert.equal(s.duplicates, 4);
  assert.deepEqual(gaps, []);
  assert.deepEqual(s.since(), { offset: 13, epoch: 'E' });
});

test('a recovered resubscribe delivers the missed publications without repeating any', () => {
  const { s, got } = sub();
  s.subscribed({ offset: 0, epoch: 'E' }, undefined);
  s.deliver(pub(1));
  s.deliver(pub(2));
  // Recovery from 2 returns 3..5; a duplicate of 2 and a live 5 are dropped.
  s.subscribed({ offset: 5, epoch: 'E' }, true, [pub(2), pub(3), pub(4), pub(5)]);
  s.deliver(pub(5));
  s.deliver(pub(6));
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
});

test('recovered:false reaches onGap and moves to the new position', () => {
  const { s, got, gaps } = sub();
  s.subscribed({ offset: 3, epoch: 'E' }, undefined);
  s.subscribed({ offset: 0, epoch: 'F' }, false);
  assert.deepEqual(gaps.map((g) => [g.channel, g.reason, g.offset, g.epoch]), [['news', 'unrecovered', 0, 'F']]);
  s.deliver(pub(1));
  assert.deepEqual(got, [1]);
  assert.deepEqual(s.since(), { offset: 1, epoch: 'F' });
});

test('a reset push reaches onGap', () => {
  const { s, gaps } = sub();
  s.subscribed({ offset: 3, epoch: 'E' }, undefined);
  s.gap('reset', { offset: 0, epoch: 'G' });
  assert.equal(gaps[0].reason, 'reset');
  assert.deepEqual(s.since(), { offset: 0, epoch: 'G' });
});

test('a stream that starts past our position (new SSE stream) is a gap, never silence', () => {
  const { s, got, gaps } = sub();
  s.subscribed({ offset: 3, epoch: 'E' }, undefined);
  s.subscribed({ offset: 7, epoch: 'E' }, undefined);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].reason, 'unrecovered');
  s.deliver(pub(8));
  assert.deepEqual(got, [8]);
});

test('a stream that starts at or behind our position is deduplicated', () => {
  const { s, got, gaps } = sub();
  s.subscribed({ offset: 3, epoch: 'E' }, undefined);
  s.deliver(pub(4));
  s.subscribed({ offset: 2, epoch: 'E' }, undefined);
  for (const o of [3, 4, 5]) s.deliver(pub(o));
  assert.deepEqual(got, [4, 5]);
  assert.deepEqual(gaps, []);
});

test('an unknown position (long polling) takes the first publication; a jump is reported as skipped', () => {
  const { s, got, gaps } = sub();
  s.subscribed({ offset: null }, undefined);
  s.deliver(pub(40));
  s.deliver(pub(41));
  s.deliver(pub(45));
  assert.deepEqual(got, [40, 41, 45]);
  assert.deepEqual(gaps.map((g) => g.reason), ['skipped']);
});

test('nothing is delivered after unsubscribe; ready rejects if it was not settled', async () => {
  let removed = 0;
  const got = [];
  const s = new Subscription('x', { onPublication: (p) => got.push(p) }, () => removed++);
  s.unsubscribe();
  s.unsubscribe();
  s.deliver(pub(1));
  assert.equal(removed, 1);
  assert.deepEqual(got, []);
  await assert.rejects(s.ready);
});
