import assert from 'node:assert/strict';
import fs from 'node:fs';
import test from 'node:test';
import { applyDelta } from '../../dist/switchboard.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
// Deltas made by the server's encoder (internal/fossil, TestVectors).
const vectors = JSON.parse(fs.readFileSync(new URL('./fossil-vectors.json', import.meta.url), 'utf8'));

test('the server\'s deltas rebuild their targets exactly', () => {
  assert.ok(vectors.length >= 10);
  for (const v of vectors) {
    const out = applyDelta(enc.encode(v.src), enc.encode(v.delta));
    assert.equal(dec.decode(out), v.target);
  }
});

test('malformed deltas throw instead of making wrong data', () => {
  const src = enc.encode('The quick brown fox jumps over the lazy dog');
  const good = vectors[1];
  for (const bad of [
    '',
    '3\n3:abc1;', // bad checksum
    '3\n3@h,0;', // copy past the end of the source
    '3\n9:abc0;', // insert past the end of the delta
    '2\n3:abc0;', // longer than the header says
    '3\n3:abc', // no end
    '3\n3!abc0;', // unknown command
    '0\n0;x', // bytes after the end
    '~~~~~~~~~~~~\n0;', // integer too large
    good.delta.replace('\n', ''), // no header
  ]) {
    assert.throws(() => applyDelta(src, enc.encode(bad)), /malformed delta/, JSON.stringify(bad));
  }
});
