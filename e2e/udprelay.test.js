// Tests of the shaping UDP relay the bandwidth test of room.test.js puts
// between Chromium and the SFU: the STUN USERNAME reader, forwarding both
// ways, and a cap that queues and then drops. On loopback, no browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { startRelay, stunUsername } from './udprelay.js';

const WAIT = 10_000;

// stunRequest builds a STUN binding request with the given attributes
// ([type, Buffer] pairs), padded to 4 bytes as RFC 5389 wants.
function stunRequest(attrs, { type = 0x0001, cookie = 0x2112a442 } = {}) {
  const body = Buffer.concat(
    attrs.map(([t, v]) => {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(t, 0);
      h.writeUInt16BE(v.length, 2);
      return Buffer.concat([h, v, Buffer.alloc((4 - (v.length % 4)) % 4)]);
    }),
  );
  const h = Buffer.alloc(20);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(body.length, 2);
  h.writeUInt32BE(cookie, 4);
  return Buffer.concat([h, body]);
}

test('stunUsername reads the USERNAME of a binding request and nothing else', () => {
  const user = Buffer.from('srvUfrag:brw1');
  const cases = [
    ['a binding request', stunRequest([[0x0024, Buffer.alloc(4)], [0x0006, user]]), 'srvUfrag:brw1'],
    ['no USERNAME', stunRequest([[0x0024, Buffer.alloc(4)]]), ''],
    ['a binding response', stunRequest([[0x0006, user]], { type: 0x0101 }), ''],
    ['no magic cookie', stunRequest([[0x0006, user]], { cookie: 1 }), ''],
    ['an attribute longer than the message', stunRequest([[0x0006, user]]).subarray(0, 30), ''],
    ['a header only', stunRequest([]).subarray(0, 19), ''],
    ['an RTP packet', Buffer.from([0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), ''],
    ['empty', Buffer.alloc(0), ''],
  ];
  for (const [name, msg, want] of cases) assert.equal(stunUsername(msg), want, name);
});

// The relay reads every datagram a browser sends: no input may make the
// STUN reader throw. Random buffers, and a valid request with random bytes
// changed or cut short (a seeded generator, so a failure repeats).
test('stunUsername never throws on random or damaged input', () => {
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const valid = stunRequest([[0x0024, Buffer.alloc(4)], [0x0006, Buffer.from('abcd:efgh')], [0x8029, Buffer.alloc(8)]]);
  for (let i = 0; i < 20000; i++) {
    let msg;
    if (i % 2 === 0) {
      msg = Buffer.alloc(rand(80));
      for (let j = 0; j < msg.length; j++) msg[j] = rand(256);
      if (msg.length >= 8 && rand(2) === 0) {
        msg.writeUInt16BE(1, 0);
        msg.writeUInt32BE(0x2112a442, 4);
      }
    } else {
      msg = Buffer.from(valid.subarray(0, rand(valid.length + 1)));
      for (let k = rand(4); k > 0 && msg.length > 0; k--) msg[rand(msg.length)] = rand(256);
    }
    const got = stunUsername(msg);
    assert.equal(typeof got, 'string', `input ${msg.toString('hex')}`);
  }
});

// waitFor polls cond until it returns a truthy value.
async function waitFor(cond, what) {
  const end = Date.now() + WAIT;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('the relay forwards both ways, and a cap queues then drops what the server sends one browser socket', async () => {
  // The "server" echoes every datagram ten times, 1000 bytes each.
  const server = dgram.createSocket('udp4');
  await new Promise((r) => server.bind(0, '127.0.0.1', r));
  server.on('message', (msg, rinfo) => {
    for (let i = 0; i < 10; i++) server.send(Buffer.concat([msg, Buffer.alloc(1000 - msg.length)]), rinfo.port, rinfo.address);
  });
  const relay = await startRelay({ listenAddress: '127.0.0.1', target: { address: '127.0.0.1', port: server.address().port } });
  const browser = dgram.createSocket('udp4');
  await new Promise((r) => browser.bind(0, '127.0.0.1', r));
  let got = 0;
  browser.on('message', () => got++);
  try {
    // The browser names itself with a connectivity check, as ICE does.
    browser.send(stunRequest([[0x0006, Buffer.from('srv:viewer')]]), relay.port, '127.0.0.1');
    await waitFor(() => got === 10, 'ten echoes without a cap');
    assert.deepEqual(relay.sessions().map((s) => s.ufrags), [['srv', 'viewer']]);

    // 8 kbit/s: 1 kB a second, a queue of at most 4.5 kB (three full
    // packets at the least): of a burst of 10 kB most is dropped at once.
    relay.setRate('viewer', 8000);
    browser.send(Buffer.from('x'), relay.port, '127.0.0.1');
    const s = await waitFor(() => relay.sessions().find((x) => x.dropped + x.forwarded >= 20), 'the burst handled');
    assert.ok(s.dropped >= 5, JSON.stringify(s));
    assert.ok(s.maxQueued <= 4500, JSON.stringify(s));

    // Lifting the cap lets the queue out at once and passes a burst whole.
    relay.setRate('viewer', 0);
    const before = relay.sessions()[0];
    browser.send(Buffer.from('y'), relay.port, '127.0.0.1');
    await waitFor(() => relay.sessions()[0].forwarded >= before.forwarded + 10, 'a whole burst without the cap');
    assert.equal(relay.sessions()[0].dropped, before.dropped);
  } finally {
    relay.close();
    browser.close();
    server.close();
  }
});
