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
        const reply = (result) => this.push({ id: cmd.id, result });
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
