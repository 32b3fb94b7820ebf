// The binary protocol's codec (src/protobuf.ts), against frames written
// by hand from internal/protocol/pb/switchboard.proto.
import assert from 'node:assert/strict';
import test from 'node:test';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/protobuf.ts');
const out = await build({ entryPoints: [src], bundle: true, format: 'esm', platform: 'neutral', write: false, logLevel: 'warning' });
const pb = await import('data:text/javascript;base64,' + Buffer.from(out.outputFiles[0].contents).toString('base64'));

const bytes = (...parts) => new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...Buffer.from(p)] : Array.isArray(p) || p instanceof Uint8Array ? [...p] : [p])));
const field = (tag, payload) => bytes(tag, payload.length, payload);

test('encodeCommand: JSON data as text, bytes in the binary field, since, limit, key', () => {
  assert.deepEqual(
    pb.encodeCommand({ id: 1, command: 'publish', channel: 'c', data: new Uint8Array([1, 2]) }),
    bytes(0x08, 1, 0x12, 7, 'publish', 0x1a, 1, 'c', 0x2a, 2, [1, 2]),
  );
  assert.deepEqual(
    pb.encodeCommand({ id: 300, command: 'publish', channel: 'c', data: { a: 1 }, idempotency_key: 'k' }),
    bytes(0x08, [0xac, 0x02], 0x12, 7, 'publish', 0x1a, 1, 'c', 0x22, 7, '{"a":1}', 0x52, 1, 'k'),
  );
  assert.deepEqual(
    pb.encodeCommand({ id: 2, command: 'history', channel: 'c', since: { offset: 5, epoch: 'E' }, limit: 0, reverse: true }),
    bytes(0x08, 2, 0x12, 7, 'history', 0x1a, 1, 'c', 0x3a, 5, [0x08, 5, 0x12, 1], 'E', 0x40, 0, 0x48, 1),
  );
  assert.deepEqual(pb.encodeCommand({ id: -1, command: 'ping' }), bytes(0x08, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 0x12, 4, 'ping'));
  assert.deepEqual(pb.encodeCommand({ command: 'publish', channel: 'c', data: null }), bytes(0x12, 7, 'publish', 0x1a, 1, 'c', 0x22, 4, 'null'));
});

test('decodeReply: the JSON protocol message for each kind of Reply', () => {
  const binPub = field(0x2a, bytes(0x0a, 1, 'c', 0x10, 3, 0x22, 2, [0xff, 0])); // publication, binary
  assert.deepEqual(pb.decodeReply(binPub), { channel: 'c', offset: 3, data: new Uint8Array([0xff, 0]) });
  const jsonPub = field(0x2a, bytes(0x0a, 1, 'c', 0x10, 4, 0x1a, 7, '{"a":1}'));
  assert.deepEqual(pb.decodeReply(jsonPub), { channel: 'c', offset: 4, data: { a: 1 } });
  const hist = bytes(0x08, 5, 0x12, 12, '{"offset":4}', field(0x22, bytes(0x0a, 1, 'c', 0x10, 4, 0x1a, 3, '"x"')));
  assert.deepEqual(pb.decodeReply(hist), { id: 5, result: { offset: 4, publications: [{ channel: 'c', offset: 4, data: 'x' }] } });
  assert.deepEqual(pb.decodeReply(bytes(0x08, 6)), { id: 6, result: {} });
  assert.deepEqual(pb.decodeReply(bytes(0x08, 7, field(0x1a, bytes(0x08, [0x90, 0x03], 0x12, 3, 'bad')))), { id: 7, error: { code: 400, message: 'bad' } });
  assert.deepEqual(pb.decodeReply(field(0x32, bytes(0x0a, 1, 'c', 0x12, 4, 'join', 0x1a, 2, '{}'))), { channel: 'c', join: {} });
  assert.deepEqual(pb.decodeReply(bytes(0x38, 1)), { pong: {} });
  assert.deepEqual(pb.decodeReply(field(0x7a, bytes('{"x":1}'))), { x: 1 });
  // Unknown fields are skipped.
  assert.deepEqual(pb.decodeReply(bytes(0x38, 1, 0x80, 0x01, 9, 0x89, 0x01, [1, 2, 3, 4, 5, 6, 7, 8])), { pong: {} });
});

test('decodeReply: malformed frames throw ProtobufError', () => {
  for (const frame of [bytes(0xff), bytes(0x12, 5, 'ab'), bytes(0x08), bytes(0x0b), bytes(0x12, 1, 0x31, 0x2a, 1, 0x08)]) {
    assert.throws(() => pb.decodeReply(frame), (e) => e instanceof pb.ProtobufError || e instanceof SyntaxError, String(frame));
  }
});

test('jsonBytes: bytes go over JSON as {"$binary"}', () => {
  assert.equal(JSON.stringify({ data: new Uint8Array([0, 1, 2, 254, 255]) }, pb.jsonBytes), '{"data":{"$binary":"AAEC/v8="}}');
  assert.equal(JSON.stringify({ data: [1, 2] }, pb.jsonBytes), '{"data":[1,2]}');
});
