// An in-memory stand-in for a Switchboard node, for the client's state
// machine tests: just enough of the protocol (connect, subscribe with
// recovery, publish with idempotency keys, refresh, close codes). The
// browser tests run the real server.

export class FakeServer {
  constructor() {
    this.channels = new Map(); // name -> {epoch, pubs: [], subs: Set<FakeWebSocket>}
    this.keys = new Map(); // channel + key -> offset
    this.sockets = [];
    this.connects = []; // tokens seen by connect
    this.refreshes = [];
    this.refuseOpen = 0; // constructor throws this many times
    this.failOpen = 0; // sockets close before opening this many times
    this.tokenCheck = null; // (token) => null | {code, close}
    this.published = 0;
  }

  channel(name) {
    let c = this.channels.get(name);
    if (!c) {
      c = { epoch: 'E1', pubs: [], subs: new Set() };
      this.channels.set(name, c);
    }
    return c;
  }

  publish(name, data) {
    const c = this.channel(name);
    const p = { channel: name, data, offset: c.pubs.length + 1 };
    c.pubs.push(p);
    this.published++;
    for (const ws of c.subs) ws.push(p);
    return p.offset;
  }

  // serverSubscribe subscribes a socket to a channel as POST /api/subscribe
  // does: a subscribed push at the channel's position (with the
  // publications after since, when given), then its publications.
  serverSubscribe(ws, name, data, since) {
    const c = this.channel(name);
    c.subs.add(ws);
    const body = { offset: c.pubs.length, epoch: c.epoch };
    if (data !== undefined) body.data = data;
    if (since) {
      body.recovered = since.epoch === c.epoch && since.offset <= c.pubs.length;
      if (body.recovered) body.publications = c.pubs.slice(since.offset);
    }
    ws.push({ channel: name, subscribed: body });
  }

  // serverUnsubscribe ends a socket's subscription as POST /api/unsubscribe does.
  serverUnsubscribe(ws, name) {
    this.channel(name).subs.delete(ws);
    ws.push({ channel: name, unsubscribed: { code: 2000, reason: 'unsubscribed by the server' } });
  }

  get WebSocket() {
    const server = this;
    return class FakeWebSocket {
      constructor(url) {
        if (server.refuseOpen > 0) {
          server.refuseOpen--;
          throw new Error('blocked');
        }
        this.url = url;
        this.readyState = 0;
        this.sent = [];
        server.sockets.push(this);
        setTimeout(() => {
          if (this.readyState !== 0) return;
          if (server.failOpen > 0) {
            server.failOpen--;
            this.readyState = 3;
            this.onclose?.({ code: 1006, reason: '' });
            return;
          }
          this.readyState = 1;
          this.onopen?.({});
        });
      }
      push(msg) {
        if (this.readyState !== 1) return;
        const data = JSON.stringify(msg);
        setTimeout(() => this.readyState === 1 && this.onmessage?.({ data }));
      }
      send(raw) {
        if (this.readyState !== 1) throw new Error('not open');
        const cmd = JSON.parse(raw);
        this.sent.push(cmd);
        if (server.mute) return; // a connection whose network died silently
        // noReply: the command is done but its answer is lost (a cut).
        const reply = (result) => !(server.noReply && cmd.command === 'publish') && this.push({ id: cmd.id, result });
        const error = (code, message) => this.push({ id: cmd.id, error: { code, message } });
        switch (cmd.command) {
          case 'connect': {
            server.connects.push(cmd.token);
            const bad = server.tokenCheck?.(cmd.token);
            if (bad) {
              error(bad.error, 'token');
              setTimeout(() => this.serverClose(bad.close), 1);
              return;
            }
            return reply({ client: `c${server.sockets.length}`, expires: 0 });
          }
          case 'refresh':
            server.refreshes.push(cmd.token);
            return reply({ expires: 0 });
          case 'subscribe': {
            const c = server.channel(cmd.channel);
            c.subs.add(this);
            const res = { channel: cmd.channel, offset: c.pubs.length, epoch: c.epoch };
            if (cmd.since) {
              if (cmd.since.epoch === c.epoch && cmd.since.offset <= c.pubs.length) {
                res.recovered = true;
                res.publications = c.pubs.slice(cmd.since.offset);
              } else res.recovered = false;
            }
            return reply(res);
          }
          case 'unsubscribe':
            server.channel(cmd.channel).subs.delete(this);
            return reply({});
          case 'publish': {
            const k = cmd.channel + '\u0000' + cmd.idempotency_key;
            if (cmd.idempotency_key && server.keys.has(k)) return reply({ offset: server.keys.get(k) });
            const offset = server.publish(cmd.channel, cmd.data);
            if (cmd.idempotency_key) server.keys.set(k, offset);
            return reply({ offset });
          }
          case 'rpc': // a backend that echoes, and refuses the method "refused"
            if (cmd.method === 'refused') return error(3404, 'no such method');
            return reply({ data: { method: cmd.method, echo: cmd.data ?? null } });
          default:
            return error(404, 'unknown command');
        }
      }
      // serverClose ends the connection with a code, as the server would.
      serverClose(code, reason = '') {
        if (this.readyState === 3) return;
        this.readyState = 3;
        for (const c of server.channels.values()) c.subs.delete(this);
        setTimeout(() => this.onclose?.({ code, reason }));
      }
      close(code) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        for (const c of server.channels.values()) c.subs.delete(this);
        setTimeout(() => this.onclose?.({ code: code ?? 1000, reason: '' }));
      }
      live() {
        return this.readyState === 1;
      }
    };
  }

  // current is the last socket that is open.
  current() {
    return [...this.sockets].reverse().find((s) => s.readyState === 1);
  }
}

// waitFor polls a condition with a generous bound (no timed assertion).
export async function waitFor(cond, what, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

// FakeSSE is an EventSource class over a FakeServer's channels, started
// from the since parameters. An event id is the JSON of the offsets (the
// real server's ids are opaque; the client never reads them). A stream can
// be paused: its events queue up.
export function fakeEventSource(server) {
  return class FakeEventSource {
    static streams = [];
    constructor(url) {
      const u = new URL(url);
      this.url = url;
      this.channels = u.searchParams.getAll('channel');
      this.listeners = {};
      this.paused = false;
      this.queue = [];
      this.closed = false;
      this.readyState = 0;
      FakeEventSource.streams.push(this);
      // since: one OFFSET:EPOCH (or empty) per channel, as the server takes it.
      const since = u.searchParams.getAll('since');
      const lost = [];
      this.offsets = this.channels.map((c, i) => {
        const top = server.channel(c).pubs.length;
        if (!since[i]) return top;
        const [off, epoch] = [Number(since[i].split(':')[0]), since[i].slice(since[i].indexOf(':') + 1)];
        if (epoch !== server.channel(c).epoch || off > top) {
          lost.push(i);
          return off;
        }
        return off;
      });
      const start = [...this.offsets];
      const epochs = this.channels.map((c, i) => (since[i] ? since[i].slice(since[i].indexOf(':') + 1) : server.channel(c).epoch));
      setTimeout(() => {
        if (this.closed) return;
        this.readyState = 1;
        this.emit('connected', { client: `s${FakeEventSource.streams.length}`, channels: this.channels.map((c, i) => ({ channel: c, offset: start[i], epoch: epochs[i] })) });
        this.channels.forEach((c, i) => {
          if (lost.includes(i)) {
            start[i] = server.channel(c).pubs.length;
            this.offsets[i] = start[i];
            this.emit('unrecovered', { channel: c, offset: start[i], epoch: server.channel(c).epoch });
          }
          for (const p of server.channel(c).pubs.slice(start[i])) this.pub(p);
          server.channel(c).subs.add(this);
        });
      });
    }
    push(p) {
      this.pub(p);
    }
    pub(p) {
      const i = this.channels.indexOf(p.channel);
      this.offsets[i] = p.offset;
      this.emit('message', p, JSON.stringify(this.offsets));
    }
    emit(name, data, id = JSON.stringify(this.offsets)) {
      const ev = { data: JSON.stringify(data), lastEventId: id };
      if (this.paused) return this.queue.push([name, ev]);
      this.dispatch(name, ev);
    }
    dispatch(name, ev) {
      if (this.closed) return;
      if (name === 'message') this.onmessage?.(ev);
      else this.listeners[name]?.(ev);
    }
    resume() {
      this.paused = false;
      for (const [name, ev] of this.queue.splice(0)) this.dispatch(name, ev);
    }
    addEventListener(name, fn) {
      this.listeners[name] = fn;
    }
    close() {
      this.closed = true;
      this.readyState = 2;
      for (const c of this.channels) server.channel(c).subs.delete(this);
    }
  };
}

// fakeFetch is fetch over a FakeServer: GET /poll with since (and the
// answer's channel positions), POST /publish and GET /history, as the real
// server answers them. A poll that has nothing waits for a publication (or
// its timeout, or its abort signal).
export function fakeFetch(server) {
  const calls = [];
  const json = (status, body) => ({ ok: status === 200, status, json: async () => body });
  const f = async (url, init = {}) => {
    const u = new URL(url);
    calls.push(u);
    const aborted = () => init.signal?.aborted;
    if (aborted()) throw new DOMException('aborted', 'AbortError');
    if (u.pathname === '/poll') {
      const names = u.searchParams.getAll('channel');
      const since = u.searchParams.getAll('since');
      const order = names.map((c, i) => ({ c, s: since[i] })).sort((a, b) => (a.c < b.c ? -1 : 1));
      const unrecovered = [];
      const pos = order.map(({ c, s }) => {
        const ch = server.channel(c);
        if (!s) return ch.pubs.length;
        const off = Number(s.slice(0, s.indexOf(':')));
        if (s.slice(s.indexOf(':') + 1) !== ch.epoch || off > ch.pubs.length) {
          unrecovered.push(c);
          return ch.pubs.length;
        }
        return off;
      });
      const collect = () => order.flatMap(({ c }, i) => server.channel(c).pubs.slice(pos[i]));
      // A channel whose epoch changes while the poll waits is unrecovered.
      const epochs = order.map(({ c }) => server.channel(c).epoch);
      const changed = () => {
        order.forEach(({ c }, i) => {
          if (server.channel(c).epoch === epochs[i]) return;
          unrecovered.push(c);
          pos[i] = server.channel(c).pubs.length;
        });
        return unrecovered.length > 0;
      };
      const end = Date.now() + Number(u.searchParams.get('timeout') ?? 25) * 1000;
      while (!unrecovered.length && !changed() && collect().length === 0 && Date.now() < end) {
        if (aborted()) throw new DOMException('aborted', 'AbortError');
        await new Promise((r) => setTimeout(r, 2));
      }
      if (aborted()) throw new DOMException('aborted', 'AbortError');
      const messages = unrecovered.length ? [] : collect();
      for (const m of messages) pos[order.findIndex((o) => o.c === m.channel)] = m.offset;
      return json(200, {
        messages,
        cursor: 'opaque',
        channels: order.map(({ c }, i) => ({ channel: c, offset: pos[i], epoch: server.channel(c).epoch })),
        ...(unrecovered.length ? { unrecovered } : {}),
      });
    }
    if (u.pathname === '/publish') {
      const b = JSON.parse(init.body);
      const k = b.channel + '\u0000' + b.idempotency_key;
      if (server.keys.has(k)) return json(200, { result: { offset: server.keys.get(k), duplicate: true } });
      const offset = server.publish(b.channel, b.data);
      server.keys.set(k, offset);
      return json(200, { result: { offset } });
    }
    if (u.pathname === '/history') {
      const ch = server.channel(u.searchParams.get('channel'));
      return json(200, { result: { publications: ch.pubs, offset: ch.pubs.length, epoch: ch.epoch } });
    }
    return json(404, { error: { code: 404, message: 'not found' } });
  };
  f.calls = calls;
  return f;
}

// FakeLocks stands in for navigator.locks: exclusive locks, granted in
// request order, released when the callback's promise settles.
export class FakeLocks {
  constructor() {
    this.queue = new Map(); // name -> [{cb, resolve}]
    this.held = new Map();
  }
  request(name, cb) {
    return new Promise((resolve, reject) => {
      const q = this.queue.get(name) ?? [];
      this.queue.set(name, q);
      q.push({ cb, resolve, reject });
      this.next(name);
    });
  }
  next(name) {
    if (this.held.get(name)) return;
    const w = this.queue.get(name)?.shift();
    if (!w) return;
    this.held.set(name, true);
    Promise.resolve()
      .then(() => w.cb())
      .then(w.resolve, w.reject)
      .finally(() => {
        this.held.set(name, false);
        this.next(name);
      });
  }
}
