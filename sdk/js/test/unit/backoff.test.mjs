import assert from 'node:assert/strict';
import test from 'node:test';
import { Backoff } from '../../dist/switchboard.js';

test('ceilings grow by the factor up to max', () => {
  const b = new Backoff({ base: 100, max: 1000, factor: 2, random: () => 0.5 });
  const ceilings = [];
  for (let i = 0; i < 6; i++) {
    ceilings.push(b.ceiling());
    b.next();
  }
  assert.deepEqual(ceilings, [100, 200, 400, 800, 1000, 1000]);
});

test('full jitter: each delay is uniform between 0 and the ceiling', () => {
  let r = 0;
  const b = new Backoff({ base: 100, max: 1000, random: () => r });
  r = 0;
  assert.equal(b.next(), 0);
  r = 0.999;
  assert.equal(b.next(), 199); // second ceiling: 200
  r = 0.5;
  assert.equal(b.next(), 200); // third ceiling: 400
});

test('reset starts again from base', () => {
  const b = new Backoff({ base: 100, max: 1000, random: () => 0.999 });
  b.next();
  b.next();
  b.next();
  b.reset();
  assert.equal(b.attempt, 0);
  assert.equal(b.next(), 99);
});

test('refuses nonsense', () => {
  assert.throws(() => new Backoff({ base: 0 }));
  assert.throws(() => new Backoff({ base: 100, max: 50 }));
  assert.throws(() => new Backoff({ factor: 0.5 }));
});
