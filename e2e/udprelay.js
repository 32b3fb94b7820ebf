// A UDP relay that shapes one direction like a thin link, for browser tests
// of what a call does under a real bandwidth cap.
//
// The relay listens on one address (the one the SFU announces, for example
// 127.0.0.2:PORT through webrtc_public_ip) and forwards every datagram to
// the SFU's real socket (127.0.0.1:PORT). Each browser socket (source
// address and port) gets a session with its own socket towards the SFU, so
// the SFU sees one distinct peer per browser socket, and answers go back to
// the browser socket they belong to.
//
// A session is named by the ICE username fragments (ufrags) of the STUN
// connectivity checks the browser sends through it (USERNAME
// "server:browser"): the test caps one PeerConnection of one page by its
// ufrag (a=ice-ufrag of its local description), whatever local addresses
// the browser uses (on a host with an interface besides lo, its checks may
// come from that address too).
//
// The browser -> SFU direction is forwarded at once. The SFU -> browser
// direction of a session can be capped with setRate(): a token bucket at the
// rate, in front of a bounded queue (a bottleneck link: packets wait, which
// the congestion controller sees as a rising delay, and a full queue drops,
// which it sees as loss). The rate can change at any time; 0 lifts the cap.

import dgram from 'node:dgram';

const STUN_COOKIE = 0x2112a442;
const STUN_BINDING_REQUEST = 0x0001;
const STUN_USERNAME = 0x0006;

// stunUsername returns the USERNAME of a STUN binding request, or '' when
// msg is not one (RTP, RTCP, DTLS, another STUN message, or a malformed
// one: every length is checked against what is there).
export function stunUsername(msg) {
  if (msg.length < 20 || msg.readUInt16BE(0) !== STUN_BINDING_REQUEST || msg.readUInt32BE(4) !== STUN_COOKIE) return '';
  const end = Math.min(msg.length, 20 + msg.readUInt16BE(2));
  for (let at = 20; at + 4 <= end; ) {
    const type = msg.readUInt16BE(at);
    const len = msg.readUInt16BE(at + 2);
    if (at + 4 + len > end) return '';
    if (type === STUN_USERNAME) return msg.toString('utf8', at + 4, at + 4 + len);
    at += 4 + len + ((4 - (len % 4)) % 4);
  }
  return '';
}

const MAX_BURST = 3000; // bytes a capped session may send at once (two full packets)

// Shaper is one direction's token bucket and bounded queue.
class Shaper {
  constructor(send, { queueMs = 300 } = {}) {
    this.send = send;
    this.queueMs = queueMs;
    this.rate = 0; // bytes per second; 0: no cap
    this.tokens = 0;
    this.at = 0;
    this.queue = [];
    this.queued = 0; // bytes in the queue
    this.timer = null;
    this.stats = { forwarded: 0, dropped: 0, bytes: 0, maxQueued: 0 };
  }

  setRate(bitsPerSecond) {
    this.rate = bitsPerSecond / 8;
    this.refill();
    if (this.rate === 0) {
      // No cap: what waits goes now.
      for (const msg of this.queue.splice(0)) this.out(msg);
      this.queued = 0;
      clearTimeout(this.timer);
      this.timer = null;
      return;
    }
    this.tokens = Math.min(this.tokens, this.burst());
    this.drain();
  }

  burst() {
    return Math.max(MAX_BURST, this.rate * 0.005);
  }

  limit() {
    return Math.max(3 * 1500, (this.rate * this.queueMs) / 1000);
  }

  refill() {
    const now = performance.now();
    if (this.rate > 0) this.tokens = Math.min(this.burst(), this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
  }

  push(msg) {
    if (this.rate === 0) {
      this.out(msg);
      return;
    }
    if (this.queued + msg.length > this.limit()) {
      this.stats.dropped++;
      return;
    }
    this.queue.push(msg);
    this.queued += msg.length;
    this.stats.maxQueued = Math.max(this.stats.maxQueued, this.queued);
    this.drain();
  }

  drain() {
    if (this.timer) return;
    this.refill();
    while (this.queue.length > 0 && this.tokens >= this.queue[0].length) {
      const msg = this.queue.shift();
      this.queued -= msg.length;
      this.tokens -= msg.length;
      this.out(msg);
    }
    if (this.queue.length > 0) {
      const wait = ((this.queue[0].length - this.tokens) / this.rate) * 1000;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.drain();
      }, Math.max(1, Math.ceil(wait)));
    }
  }

  out(msg) {
    this.stats.forwarded++;
    this.stats.bytes += msg.length;
    this.send(msg);
  }

  close() {
    clearTimeout(this.timer);
    this.queue = [];
  }
}

// Large receive buffers: the relay runs in the test's own process, whose
// event loop also drives the browser; a loaded machine can stall it for a
// while, and what the kernel drops meanwhile would look like a thin link.
// (Linux caps the size at net.core.rmem_max.)
const socketOptions = { type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 };

// startRelay listens on listenAddress:listenPort (port 0: any) and resolves
// to the relay once it is bound; relay.port is its port. Datagrams go to
// target ({address, port}), which may be set later (relay.target = ...)
// when the SFU's port is the relay's own.
export function startRelay({ listenAddress = '127.0.0.2', listenPort = 0, target = null, queueMs = 300 } = {}) {
  const front = dgram.createSocket(socketOptions);
  const sessions = new Map(); // "address:port" of the browser socket -> session
  const rates = new Map(); // ufrag -> bit/s, kept for sessions yet to come
  const rateOf = (s) => s.ufrags.map((u) => rates.get(u)).find((r) => r !== undefined) ?? 0;
  const relay = {
    target,
    port: 0,
    // setRate caps what the SFU sends to the browser sockets whose
    // connectivity checks carry ufrag at bitsPerSecond; 0 lifts the cap.
    setRate(ufrag, bitsPerSecond) {
      rates.set(ufrag, bitsPerSecond);
      for (const s of sessions.values()) if (s.ufrags.includes(ufrag)) s.shaper.setRate(bitsPerSecond);
    },
    // sessions lists the browser sockets seen, their ufrags, what was
    // forwarded to each and what was dropped.
    sessions() {
      return [...sessions.entries()].map(([browser, s]) => ({ browser, ufrags: s.ufrags, rate: s.shaper.rate * 8, queued: s.shaper.queued, ...s.shaper.stats }));
    },
    close() {
      for (const s of sessions.values()) {
        s.shaper.close();
        s.socket.close();
      }
      sessions.clear();
      front.close();
    },
  };
  front.on('message', (msg, rinfo) => {
    if (!relay.target) return;
    const key = `${rinfo.address}:${rinfo.port}`;
    let s = sessions.get(key);
    if (!s) {
      const socket = dgram.createSocket(socketOptions);
      const shaper = new Shaper((m) => front.send(m, rinfo.port, rinfo.address), { queueMs });
      socket.on('message', (m) => shaper.push(m));
      socket.on('error', () => {}); // ICMP unreachable while the SFU restarts: keep going
      socket.bind(0, relay.target.address);
      s = { socket, shaper, ufrags: [] };
      sessions.set(key, s);
    }
    const user = stunUsername(msg);
    if (user) {
      const ufrags = user.split(':');
      if (ufrags.some((u) => !s.ufrags.includes(u))) {
        s.ufrags = [...new Set([...s.ufrags, ...ufrags])];
        s.shaper.setRate(rateOf(s));
      }
    }
    s.socket.send(msg, relay.target.port, relay.target.address);
  });
  front.on('error', () => {});
  return new Promise((resolve, reject) => {
    front.once('error', reject);
    front.bind(listenPort, listenAddress, () => {
      front.off('error', reject);
      relay.port = front.address().port;
      resolve(relay);
    });
  });
}
