// switchboard-client 0.1.0: the Switchboard browser SDK. Built from sdk/js by "npm run build"; do not edit.

// src/backoff.ts
var Backoff = class {
  constructor(opts = {}) {
    /** attempt counts the delays handed out since the last reset. */
    this.attempt = 0;
    this.base = opts.base ?? 500;
    this.max = opts.max ?? 1e4;
    this.factor = opts.factor ?? 2;
    this.random = opts.random ?? Math.random;
    if (!(this.base > 0) || !(this.max >= this.base) || !(this.factor >= 1)) {
      throw new RangeError("switchboard: backoff needs 0 < base <= max and factor >= 1");
    }
  }
  /** ceiling is the upper bound of the next delay. */
  ceiling() {
    return Math.min(this.max, this.base * Math.pow(this.factor, this.attempt));
  }
  /** next returns the next delay in ms and counts the attempt. */
  next() {
    const d = Math.floor(this.random() * this.ceiling());
    this.attempt++;
    return d;
  }
  /** reset starts again from `base`. */
  reset() {
    this.attempt = 0;
  }
};

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = {};
  }
  on(name, fn) {
    let set = this.listeners[name];
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.listeners[name] = set;
    }
    set.add(fn);
    return () => this.off(name, fn);
  }
  off(name, fn) {
    this.listeners[name]?.delete(fn);
  }
  emit(name, event) {
    const set = this.listeners[name];
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(event);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
};

// src/outbox.ts
var MemoryOutboxStore = class {
  constructor() {
    this.entries = /* @__PURE__ */ new Map();
  }
  async load(scope) {
    return [...this.entries.values()].filter((e) => e.scope === scope).sort((a, b) => a.seq - b.seq);
  }
  async put(e) {
    this.entries.set(e.id, structuredClone(e));
  }
  async delete(id) {
    this.entries.delete(id);
  }
};
var DB_NAME = "switchboard-outbox";
var STORE = "entries";
function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
var IndexedDBOutboxStore = class {
  constructor(idb, name = DB_NAME) {
    this.db = new Promise((resolve, reject) => {
      const open = idb.open(name, 1);
      open.onupgradeneeded = () => {
        open.result.createObjectStore(STORE, { keyPath: "id" });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
      open.onblocked = () => reject(new Error("switchboard: outbox database blocked"));
    });
    this.db.catch(() => {
    });
  }
  async tx(mode) {
    return (await this.db).transaction(STORE, mode).objectStore(STORE);
  }
  async load(scope) {
    const all = await req((await this.tx("readonly")).getAll());
    return all.filter((e) => e.scope === scope).sort((a, b) => a.seq - b.seq);
  }
  async put(e) {
    const store = await this.tx("readwrite");
    const done = new Promise((resolve, reject) => {
      store.transaction.oncomplete = () => resolve();
      store.transaction.onerror = () => reject(store.transaction.error);
      store.transaction.onabort = () => reject(store.transaction.error);
    });
    store.put(e);
    await done;
  }
  async delete(id) {
    await req((await this.tx("readwrite")).delete(id));
  }
};
function defaultStore() {
  const idb = globalThis.indexedDB;
  if (idb) {
    try {
      return new IndexedDBOutboxStore(idb);
    } catch {
    }
  }
  return new MemoryOutboxStore();
}
function randomKey() {
  const c = globalThis.crypto;
  const b = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
var REMEMBER = 1e4;
var Outbox = class {
  /**
   * load: read the entries kept in the store now (a page's own outbox).
   * Without it the outbox starts empty until {@link sync} (a tab that
   * does not hold a shared connection sends nothing itself).
   */
  constructor(store, scope, isRetryable, load = true) {
    /** entries not acked yet (failed ones stay, without being persisted, until dropFailed). */
    this.entries = [];
    this.seq = 0;
    this.seqOf = /* @__PURE__ */ new Map();
    this.waiters = /* @__PURE__ */ new Map();
    this.busy = /* @__PURE__ */ new Set();
    // channels with a send in flight
    this.sender = null;
    this.persisted = /* @__PURE__ */ new Map();
    this.acked = /* @__PURE__ */ new Map();
    /** retryDelay is the pause before resending after a retryable refusal, in ms. */
    this.retryDelay = 1e3;
    /** onChange runs after every change of an entry's state. */
    this.onChange = null;
    this.store = store;
    this.scope = scope;
    this.isRetryable = isRetryable;
    this.loaded = load ? this.sync() : Promise.resolve();
  }
  /**
   * setScope changes the scope of an outbox that has not loaded or queued
   * anything yet (a shared connection's outbox is scoped by identity, known
   * only once the token is).
   */
  setScope(scope) {
    if (this.entries.length === 0) this.scope = scope;
  }
  /** nextSeq is the seq of a new entry. */
  nextSeq() {
    const perf = globalThis.performance;
    const now = perf?.timeOrigin ? perf.timeOrigin + perf.now() : Date.now();
    this.seq = Math.max(Math.floor(now * 1e3), this.seq + 1);
    return this.seq;
  }
  /**
   * persist writes an entry to the store without queueing it here: a tab
   * of a shared connection makes its publish durable before handing it to
   * the context that sends. Resolves with the entry's seq.
   */
  async persist(channel, data, id) {
    const seq = this.nextSeq();
    await this.store.put({ id, seq, scope: this.scope, channel, data });
    return seq;
  }
  /**
   * sync adds the entries of the store that are not here yet (written by
   * another tab, or by a holder of the shared connection that went away),
   * in seq order, and sends them. Entries acked here are not taken again.
   */
  sync() {
    const run = (async () => {
      await Promise.all(this.persisted.values());
      let kept;
      try {
        kept = await this.store.load(this.scope);
      } catch {
        return;
      }
      const have = new Set(this.entries.map((e) => e.id));
      const fresh = [];
      for (const k of kept) {
        this.seq = Math.max(this.seq, k.seq);
        if (have.has(k.id) || this.acked.has(k.id)) continue;
        fresh.push({ id: k.id, channel: k.channel, data: k.data, state: "queued" });
        this.seqOf.set(k.id, k.seq);
      }
      if (!fresh.length) return;
      this.entries.unshift(...fresh);
      const order = this.entries.map((e, i) => [this.seqOf.get(e.id) ?? 0, i, e]);
      order.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      this.entries.splice(0, this.entries.length, ...order.map((x) => x[2]));
      this.changed();
    })();
    this.loaded = run;
    void run.then(() => this.flush());
    return run;
  }
  /**
   * add queues a publish and returns its promise (resolved on ack). An
   * id already queued (or recently acked) is not queued twice: the
   * promise follows the entry there is.
   */
  add(channel, data, id = randomKey(), seq) {
    const done = this.acked.get(id);
    if (done !== void 0) return Promise.resolve({ offset: done });
    const result = new Promise((resolve, reject) => {
      const ws = this.waiters.get(id) ?? [];
      ws.push({ resolve, reject });
      this.waiters.set(id, ws);
    });
    const known = this.entries.find((e) => e.id === id);
    if (known) {
      if (known.state === "failed") this.settle(id, known.error ?? new Error("switchboard: publish failed"));
      return result;
    }
    const entry = { id, channel, data, state: "queued" };
    if (seq === void 0) seq = this.nextSeq();
    else this.seq = Math.max(this.seq, seq);
    this.seqOf.set(id, seq);
    this.entries.push(entry);
    const stored = { id, seq, scope: this.scope, channel, data };
    const p = this.store.put(stored).catch(() => {
    });
    this.persisted.set(id, p);
    this.changed();
    void this.flush();
    return result;
  }
  settle(id, err, offset = 0) {
    const ws = this.waiters.get(id);
    this.waiters.delete(id);
    for (const w of ws ?? []) err ? w.reject(err) : w.resolve({ offset });
  }
  /** online sets the sender (null while disconnected) and sends what is queued. */
  setSender(s) {
    this.sender = s;
    if (!s) {
      for (const e of this.entries) if (e.state === "sent") e.state = "queued";
      this.changed();
      return;
    }
    void this.flush();
  }
  /** flush starts sending the first queued entry of every idle channel. */
  async flush() {
    await this.loaded;
    if (!this.sender) return;
    const channels = /* @__PURE__ */ new Set();
    for (const e of this.entries) if (e.state === "queued" || e.state === "sent") channels.add(e.channel);
    for (const ch of channels) if (!this.busy.has(ch)) void this.drain(ch);
  }
  async drain(channel) {
    this.busy.add(channel);
    let retryLater = false;
    try {
      for (; ; ) {
        const sender = this.sender;
        if (!sender) return;
        const e = this.entries.find((x) => x.channel === channel && (x.state === "queued" || x.state === "sent"));
        if (!e) return;
        await this.persisted.get(e.id);
        e.state = "sent";
        this.changed();
        let res;
        try {
          res = await sender(e);
        } catch (err) {
          if (this.isRetryable(err)) {
            if (e.state === "sent") e.state = "queued";
            this.changed();
            retryLater = true;
            return;
          }
          this.fail(e, err instanceof Error ? err : new Error(String(err)));
          continue;
        }
        this.ack(e, res.offset);
      }
    } finally {
      this.busy.delete(channel);
      const pending = this.entries.some((x) => x.channel === channel && x.state === "queued");
      if (pending && this.sender) {
        if (retryLater) setTimeout(() => void this.flush(), this.retryDelay);
        else void this.drain(channel);
      }
    }
  }
  ack(e, offset) {
    e.state = "acked";
    e.offset = offset;
    this.acked.set(e.id, offset);
    if (this.acked.size > REMEMBER) this.acked.delete(this.acked.keys().next().value);
    this.remove(e);
    this.settle(e.id, null, offset);
  }
  fail(e, err) {
    e.state = "failed";
    e.error = err;
    void this.store.delete(e.id).catch(() => {
    });
    this.persisted.delete(e.id);
    this.changed();
    this.settle(e.id, err);
  }
  remove(e) {
    const i = this.entries.indexOf(e);
    if (i >= 0) this.entries.splice(i, 1);
    const p = this.persisted.get(e.id) ?? Promise.resolve();
    this.persisted.delete(e.id);
    this.seqOf.delete(e.id);
    void p.then(() => this.store.delete(e.id)).catch(() => {
    });
    this.changed();
  }
  /** dropFailed forgets the entries that failed for good. */
  dropFailed() {
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i].state === "failed") this.entries.splice(i, 1);
    this.changed();
  }
  /** close rejects every waiting publish (the entries stay stored for the next page). */
  close(err) {
    this.sender = null;
    for (const [, ws] of this.waiters) for (const w of ws) w.reject(err);
    this.waiters.clear();
  }
  changed() {
    this.onChange?.();
  }
};

// src/types.ts
var ServerError = class extends Error {
  constructor(code, message) {
    super(`switchboard: ${code}: ${message}`);
    this.name = "ServerError";
    this.code = code;
  }
  /** temporary says whether retrying the same thing later may succeed. */
  get temporary() {
    return this.code === 503 || this.code === 429 || this.code === 500;
  }
};
var DisconnectedError = class extends Error {
  constructor(message = "switchboard: disconnected") {
    super(message);
    this.name = "DisconnectedError";
  }
};
function closeIsFatal(code) {
  return code >= 4500 && code <= 4999;
}

// src/protobuf.ts
var SUBPROTOCOL = "switchboard.v1.protobuf";
var enc = new TextEncoder();
var dec = new TextDecoder();
var VARINT = 0;
var I64 = 1;
var LEN = 2;
var I32 = 5;
var Writer = class {
  constructor() {
    this.b = new Uint8Array(128);
    this.n = 0;
  }
  room(k) {
    if (this.n + k <= this.b.length) return;
    const nb = new Uint8Array(Math.max(this.b.length * 2, this.n + k));
    nb.set(this.b.subarray(0, this.n));
    this.b = nb;
  }
  /** varint writes a non-negative integer (exact up to 2^53), or a negative one as int64. */
  varint(v) {
    this.room(10);
    if (v < 0) {
      let big = BigInt.asUintN(64, BigInt(Math.trunc(v)));
      while (big >= 0x80n) {
        this.b[this.n++] = Number(big & 0x7fn) | 128;
        big >>= 7n;
      }
      this.b[this.n++] = Number(big);
      return;
    }
    while (v >= 128) {
      this.b[this.n++] = v % 128 | 128;
      v = Math.floor(v / 128);
    }
    this.b[this.n++] = v;
  }
  tag(num, type) {
    this.varint(num * 8 + type);
  }
  bytes(num, data) {
    this.tag(num, LEN);
    this.varint(data.length);
    this.room(data.length);
    this.b.set(data, this.n);
    this.n += data.length;
  }
  string(num, s) {
    if (typeof s === "string" && s !== "") this.bytes(num, enc.encode(s));
  }
  finish() {
    return this.b.slice(0, this.n);
  }
};
function isBytes(v) {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
}
function asBytes(v) {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}
function base64(b) {
  let s = "";
  for (let i = 0; i < b.length; i += 32768) s += String.fromCharCode(...b.subarray(i, i + 32768));
  return btoa(s);
}
function jsonBytes(_key, v) {
  return isBytes(v) ? { $binary: base64(asBytes(v)) } : v;
}
function encodeCommand(cmd) {
  const w = new Writer();
  if (typeof cmd.id === "number") {
    w.tag(1, VARINT);
    w.varint(cmd.id);
  }
  w.string(2, cmd.command);
  w.string(3, cmd.channel);
  if (cmd.data !== void 0) {
    if (isBytes(cmd.data)) w.bytes(5, asBytes(cmd.data));
    else w.bytes(4, enc.encode(JSON.stringify(cmd.data)));
  }
  w.string(6, cmd.token);
  const since = cmd.since;
  if (since && typeof since === "object") {
    const s = new Writer();
    if (since.offset) {
      s.tag(1, VARINT);
      s.varint(since.offset);
    }
    s.string(2, since.epoch);
    w.bytes(7, s.finish());
  }
  if (typeof cmd.limit === "number") {
    w.tag(8, VARINT);
    w.varint(cmd.limit);
  }
  if (cmd.reverse) {
    w.tag(9, VARINT);
    w.varint(1);
  }
  if (typeof cmd.idempotency_key === "string") w.bytes(10, enc.encode(cmd.idempotency_key));
  w.string(11, cmd.method);
  return w.finish();
}
var ProtobufError = class extends Error {
  constructor(message) {
    super(`switchboard: malformed binary message: ${message}`);
    this.name = "ProtobufError";
  }
};
var Reader = class {
  constructor(b) {
    this.b = b;
    this.pos = 0;
  }
  get done() {
    return this.pos >= this.b.length;
  }
  varint() {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.b.length) throw new ProtobufError("truncated varint");
      const c = this.b[this.pos++];
      v += (c & 127) * mul;
      if (c < 128) {
        return v >= 2 ** 63 ? v - 2 ** 64 : v;
      }
      mul *= 128;
    }
    throw new ProtobufError("varint too long");
  }
  bytes() {
    const n = this.varint();
    if (n < 0 || this.pos + n > this.b.length) throw new ProtobufError("truncated field");
    const out = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** field reads a tag, and its value: a number (varint) or bytes; other types are skipped (undefined). */
  field() {
    const key = this.varint();
    const num = Math.floor(key / 8);
    const type = key % 8;
    switch (type) {
      case VARINT:
        return [num, this.varint(), type];
      case LEN:
        return [num, this.bytes(), type];
      case I64:
      case I32: {
        const n = type === I64 ? 8 : 4;
        if (this.pos + n > this.b.length) throw new ProtobufError("truncated field");
        this.pos += n;
        return [num, void 0, type];
      }
      default:
        throw new ProtobufError(`wire type ${type}`);
    }
  }
};
function fields(b, f) {
  const r = new Reader(b);
  while (!r.done) {
    const [num, v] = r.field();
    f(num, v);
  }
}
function need(v, kind) {
  if (kind === "number" ? typeof v !== "number" : !(v instanceof Uint8Array)) throw new ProtobufError("wrong wire type");
  return v;
}
var text = (v) => dec.decode(need(v, "bytes"));
var json = (v) => JSON.parse(text(v));
function publication(b) {
  const p = { channel: "", data: null, offset: 0 };
  fields(b, (num, v) => {
    if (num === 1) p.channel = text(v);
    else if (num === 2) p.offset = need(v, "number");
    else if (num === 3) p.data = json(v);
    else if (num === 4) p.data = need(v, "bytes").slice();
  });
  return p;
}
function decodeReply(b) {
  const msg = {};
  let result;
  let pubs;
  let whole;
  fields(b, (num, v) => {
    switch (num) {
      case 1:
        msg.id = need(v, "number");
        break;
      case 2:
        result = json(v);
        break;
      case 3: {
        const e = { code: 0, message: "" };
        fields(need(v, "bytes"), (n, x) => {
          if (n === 1) e.code = need(x, "number") | 0;
          else if (n === 2) e.message = text(x);
          else if (n === 3) e.url = text(x);
        });
        msg.error = e;
        break;
      }
      case 4:
        if (!pubs) pubs = [];
        pubs.push(publication(need(v, "bytes")));
        break;
      case 5:
        Object.assign(msg, publication(need(v, "bytes")));
        break;
      case 6: {
        let channel = "";
        let kind = "";
        let body = {};
        fields(need(v, "bytes"), (n, x) => {
          if (n === 1) channel = text(x);
          else if (n === 2) kind = text(x);
          else if (n === 3) body = json(x);
        });
        msg.channel = channel;
        if (kind !== "channel") msg[kind] = body;
        break;
      }
      case 7:
        if (need(v, "number")) msg.pong = {};
        break;
      case 15:
        whole = json(v);
        break;
    }
  });
  if (whole) return whole;
  if ("id" in msg && !msg.error) {
    msg.result = result ?? {};
    if (pubs) msg.result.publications = pubs;
  }
  return msg;
}

// src/transport.ts
function sinceParams(q, subs) {
  const since = subs.map((s) => s.since());
  if (since.some((p) => p !== void 0)) {
    for (const p of since) q.append("since", p ? `${p.offset}:${p.epoch}` : "");
  }
  return since;
}
async function httpPublish(ctx, channel, data, key, signal) {
  const f = ctx.env.fetch ?? globalThis.fetch;
  const headers = { "Content-Type": "application/json" };
  const token = ctx.token();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let resp;
  try {
    resp = await f(`${ctx.httpURL}/publish`, {
      method: "POST",
      headers,
      body: JSON.stringify({ channel, data, idempotency_key: key }, jsonBytes),
      signal
    });
  } catch (err) {
    throw new ServerError(503, `publish failed: ${String(err)}`);
  }
  return answer(resp);
}
var ReadCommands = /* @__PURE__ */ new Set(["history", "presence", "presence_stats"]);
async function httpRead(ctx, cmd) {
  const name = String(cmd.command);
  if (!ReadCommands.has(name)) throw new Error(`switchboard: ${name} needs the websocket transport`);
  const q = new URLSearchParams();
  q.set("channel", String(cmd.channel));
  if (name === "history") {
    if (cmd.limit !== void 0) q.set("limit", String(cmd.limit));
    if (cmd.reverse) q.set("reverse", "true");
    const since = cmd.since;
    if (since) q.set("since", `${since.offset}:${since.epoch}`);
  }
  const f = ctx.env.fetch ?? globalThis.fetch;
  const headers = {};
  const token = ctx.token();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let resp;
  try {
    resp = await f(`${ctx.httpURL}/${name}?${q}`, { headers, cache: "no-store" });
  } catch (err) {
    throw new DisconnectedError(`switchboard: ${name} failed: ${String(err)}`);
  }
  return answer(resp);
}
async function answer(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
  }
  if (resp.ok && body && "result" in body) return body.result;
  if (resp.ok && body && !("error" in body)) return body;
  const code = body?.error?.code ?? (resp.status >= 500 ? 503 : resp.status);
  throw new ServerError(code, body?.error?.message ?? `HTTP ${resp.status}`);
}

// src/sse.ts
var MaxStreamChannels = 16;
function chunks(subs) {
  const out = [];
  for (let i = 0; i < subs.length; i += MaxStreamChannels) out.push(subs.slice(i, i + MaxStreamChannels));
  return out;
}
var SSETransport = class {
  constructor(ctx) {
    this.ctx = ctx;
    this.name = "sse";
    this.ended = false;
    this.started = false;
    // opened was reported
    this.streams = [];
  }
  open() {
    const ES = this.ctx.env.EventSource ?? globalThis.EventSource;
    if (!ES) {
      setTimeout(() => this.end(0, "sse: no EventSource", false));
      return;
    }
    this.sync();
  }
  /** sync makes the streams match the subscriptions: a group whose list changed gets a new stream. */
  sync() {
    if (this.ended) return;
    const groups = chunks(this.ctx.subscriptions());
    for (let i = 0; i < Math.max(groups.length, this.streams.length); i++) {
      const cur = this.streams[i];
      const want = groups[i];
      if (cur && want && cur.subs.length === want.length && cur.subs.every((s, j) => s === want[j])) continue;
      cur?.es.close();
      if (want) {
        const s = this.stream(want);
        if (!s) return;
        this.streams[i] = s;
      }
    }
    this.streams.length = groups.length;
    if (groups.length === 0 && !this.started) {
      this.started = true;
      this.ctx.opened({});
    }
  }
  stream(subs) {
    const ES = this.ctx.env.EventSource ?? globalThis.EventSource;
    const q = new URLSearchParams();
    for (const s of subs) q.append("channel", s.channel);
    sinceParams(q, subs);
    const token = this.ctx.token();
    if (token) q.set("token", token);
    let es;
    try {
      es = new ES(`${this.ctx.httpURL}/sse?${q}`);
    } catch (err) {
      setTimeout(() => this.end(0, `sse: ${String(err)}`, false));
      return null;
    }
    const st = { es, subs, connected: false };
    const byName = new Map(subs.map((s) => [s.channel, s]));
    const live = () => !this.ended && this.streams.includes(st);
    es.addEventListener("connected", (e) => {
      if (!live()) return;
      const d = JSON.parse(e.data);
      st.connected = true;
      if (!this.started) {
        this.started = true;
        this.ctx.opened({ client: d.client });
      } else if (d.client && st === this.streams[0]) {
        this.ctx.identified(d.client);
      }
      for (const c of d.channels ?? []) byName.get(c.channel)?.subscribed({ offset: c.offset, epoch: c.epoch }, void 0);
    });
    es.addEventListener("unrecovered", (e) => {
      if (!live()) return;
      const d = JSON.parse(e.data);
      byName.get(d.channel)?.gap("unrecovered", { offset: d.offset, epoch: d.epoch });
    });
    for (const kind of ["join", "leave"]) {
      es.addEventListener(kind, (e) => {
        if (!live()) return;
        const d = JSON.parse(e.data);
        byName.get(d.channel)?.presenceEvent(kind, d[kind]);
      });
    }
    es.addEventListener("disconnect", (e) => {
      if (!live()) return;
      const d = JSON.parse(e.data);
      this.end(d.code, d.reason ?? "disconnected", st.connected || this.started, d.code === 4005);
    });
    es.onmessage = (e) => {
      if (!live()) return;
      const m = JSON.parse(e.data);
      const sub = byName.get(m.channel);
      if (sub && typeof m.offset === "number") sub.deliver({ channel: m.channel, data: m.data, offset: m.offset });
    };
    es.onerror = () => {
      if (!live()) return;
      this.end(0, "sse: stream failed", st.connected || this.started);
    };
    return st;
  }
  end(code, reason, opened, tokenExpired = false) {
    if (this.ended) return;
    this.close();
    this.ctx.closed({ code, reason, opened, tokenExpired, fatal: closeIsFatal(code) });
  }
  close() {
    this.ended = true;
    for (const s of this.streams) s.es.close();
    this.streams = [];
  }
  subscriptionsChanged() {
    this.sync();
  }
  publish(channel, data, key) {
    return httpPublish(this.ctx, channel, data, key);
  }
  request(command) {
    if (command.command === "publish") return httpPublish(this.ctx, String(command.channel), command.data, String(command.idempotency_key));
    return httpRead(this.ctx, command);
  }
  async refresh(_token) {
    if (this.ended) return;
    for (const s of this.streams) s.es.close();
    this.streams = [];
    this.sync();
  }
};

// src/poll.ts
var PollTimeout = 25;
var PollTransport = class {
  constructor(ctx) {
    this.ctx = ctx;
    this.name = "poll";
    this.ended = false;
    this.started = false;
    this.workers = /* @__PURE__ */ new Map();
    this.idle = null;
  }
  open() {
    const f = this.ctx.env.fetch ?? globalThis.fetch;
    if (!f) {
      setTimeout(() => this.end(0, "poll: no fetch"));
      return;
    }
    this.sync();
  }
  close() {
    this.ended = true;
    for (const w of this.workers.values()) w.abort?.abort();
    this.idle?.();
  }
  end(code, reason, tokenExpired = false, fatal = false) {
    if (this.ended) return;
    this.close();
    this.ctx.closed({ code, reason, opened: this.started, tokenExpired, fatal });
  }
  /** sync starts a worker per group of channels (worker 0 also waits while there are none). */
  sync() {
    if (this.ended) return;
    const n = Math.max(1, chunks(this.ctx.subscriptions()).length);
    for (let k = 0; k < n; k++) {
      if (this.workers.has(k)) continue;
      const w = { abort: null, changed: false };
      this.workers.set(k, w);
      void this.loop(k, w);
    }
  }
  async loop(k, w) {
    const f = this.ctx.env.fetch ?? globalThis.fetch;
    while (!this.ended) {
      const subs = chunks(this.ctx.subscriptions())[k] ?? [];
      w.changed = false;
      if (subs.length === 0) {
        if (k > 0) {
          this.workers.delete(k);
          return;
        }
        if (!this.started) {
          this.started = true;
          this.ctx.opened({});
        }
        await new Promise((r) => this.idle = r);
        this.idle = null;
        continue;
      }
      const q = new URLSearchParams();
      for (const s of subs) q.append("channel", s.channel);
      const since = sinceParams(q, subs);
      const wait = this.started && subs.every((s, i) => since[i] !== void 0 && s.state === "subscribed");
      q.set("timeout", wait ? String(PollTimeout) : "0");
      const headers = {};
      const token = this.ctx.token();
      if (token) headers["Authorization"] = `Bearer ${token}`;
      const abort = new AbortController();
      w.abort = abort;
      let result;
      try {
        const resp = await f(`${this.ctx.httpURL}/poll?${q}`, { headers, signal: abort.signal, cache: "no-store" });
        result = await answer(resp);
      } catch (err) {
        if (this.ended) return;
        if (w.changed) continue;
        if (err instanceof ServerError) {
          if (err.code === 419) return this.end(4005, err.message, true);
          if (err.code === 401) return this.end(4502, err.message, false, true);
          if (err.code === 503) return this.end(0, err.message);
          for (const s of subs) s.failed(err);
          continue;
        }
        return this.end(0, `poll: ${String(err)}`);
      }
      if (this.ended) return;
      if (w.changed) continue;
      const byName = new Map(subs.map((s) => [s.channel, s]));
      const positions = /* @__PURE__ */ new Map();
      for (const c of result.channels ?? []) positions.set(c.channel, { offset: c.offset, epoch: c.epoch });
      const lost = new Set(result.unrecovered ?? []);
      for (const ch of lost) {
        const s = byName.get(ch);
        const p = positions.get(ch);
        const pos = p ? { offset: p.offset, epoch: p.epoch } : { offset: null };
        if (s?.state === "subscribing") s.subscribed(pos, false);
        else s?.gap("unrecovered", pos);
      }
      subs.forEach((s, i) => {
        if (s.state === "subscribing" && since[i] && !lost.has(s.channel)) s.subscribed({ ...since[i] }, void 0);
      });
      if (!this.started) {
        this.started = true;
        this.ctx.opened({});
      }
      for (const m of result.messages ?? []) {
        const s = byName.get(m.channel);
        if (s && typeof m.offset === "number") s.deliver({ channel: m.channel, data: m.data, offset: m.offset });
      }
      for (const s of subs) {
        const p = positions.get(s.channel);
        if (!p) continue;
        if (s.state === "subscribing") s.subscribed({ ...p }, void 0);
        else if (s.position && s.position.offset === p.offset) s.position.epoch = p.epoch;
      }
    }
  }
  subscriptionsChanged() {
    for (const w of this.workers.values()) {
      w.changed = true;
      w.abort?.abort();
    }
    this.idle?.();
    this.sync();
  }
  publish(channel, data, key) {
    return httpPublish(this.ctx, channel, data, key);
  }
  request(command) {
    if (command.command === "publish") return httpPublish(this.ctx, String(command.channel), command.data, String(command.idempotency_key));
    return httpRead(this.ctx, command);
  }
  async refresh(_token) {
  }
};

// src/subscription.ts
var Subscription = class {
  /** @internal */
  constructor(channel, handlers, onUnsubscribe) {
    /** state: "subscribing" until the server confirmed (again after each reconnect). */
    this.state = "subscribing";
    /** delivered counts publications handed to onPublication. */
    this.delivered = 0;
    /** duplicates counts publications dropped because they were already delivered. */
    this.duplicates = 0;
    /**
     * server says the server made this subscription (POST /api/subscribe):
     * it came with the client's "subscribed" event. It is subscribed again
     * after a reconnect like any other.
     */
    this.server = false;
    this.settled = false;
    this.channel = channel;
    this.handlers = handlers;
    this.delta = handlers.delta;
    this.onUnsubscribe = onUnsubscribe;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {
    });
  }
  /**
   * setHandlers sets callbacks of the subscription (those given replace
   * the ones it had): for a server-side subscription, call it in the
   * "subscribed" listener to get every publication.
   */
  setHandlers(handlers) {
    this.handlers = { ...this.handlers, ...handlers };
  }
  /** unsubscribe stops the subscription; no callback runs after it returns. */
  unsubscribe() {
    if (this.state === "unsubscribed") return;
    this.state = "unsubscribed";
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new Error("switchboard: unsubscribed"));
    }
    this.onUnsubscribe(this);
  }
  /** @internal since is the position to resume from, when one is known. */
  since() {
    const p = this.position;
    if (!p || p.offset === null || p.epoch === void 0) return void 0;
    return { offset: p.offset, epoch: p.epoch };
  }
  /**
   * @internal subscribed records a (re)subscribe at `pos`: the server's
   * current position when it could not recover (or for a first subscribe),
   * after which live publications follow.
   */
  subscribed(pos, recovered, publications) {
    if (this.state === "unsubscribed") return;
    const prev = this.position;
    if (recovered === false) {
      this.gap("unrecovered", pos);
    } else if (publications) {
      for (const p of publications) this.deliver(p);
      if (this.position && pos.epoch) this.position.epoch = pos.epoch;
    } else if (!prev) {
      this.position = { ...pos };
    } else {
      this.startAt(pos);
    }
    this.state = "subscribed";
    if (!this.settled) {
      this.settled = true;
      this.resolveReady();
    }
  }
  /**
   * @internal startAt handles a stream that starts at `pos` without
   * having been asked for our position (a new SSE stream): any publication
   * between ours and `pos` is lost, and the subscriber is told.
   */
  startAt(pos) {
    const prev = this.position;
    if (!prev || prev.offset === null) {
      this.position = { offset: pos.offset, epoch: pos.epoch ?? prev?.epoch };
      return;
    }
    if (pos.epoch !== void 0 && prev.epoch !== void 0 && pos.epoch !== prev.epoch) {
      this.gap("unrecovered", pos);
      return;
    }
    if (pos.offset !== null && pos.offset > prev.offset) {
      this.gap("unrecovered", pos);
      return;
    }
    if (pos.epoch !== void 0) prev.epoch = pos.epoch;
  }
  /** @internal failed records a refusal of the subscribe for good. */
  failed(err) {
    if (this.state === "unsubscribed") return;
    this.state = "failed";
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(err);
    }
    this.handlers.onError?.(err);
  }
  /**
   * @internal deliver hands a publication to the subscriber unless it
   * was delivered before: offsets at or below the position are duplicates
   * (a resent answer, a recovered publication also pushed live).
   */
  deliver(p) {
    if (this.state === "unsubscribed") return;
    const pos = this.position;
    if (pos && pos.offset !== null) {
      if (p.offset <= pos.offset) {
        this.duplicates++;
        return;
      }
      if (p.offset > pos.offset + 1) {
        this.gap("skipped", { offset: p.offset - 1, epoch: pos.epoch });
      }
    }
    this.position = { offset: p.offset, epoch: pos?.epoch };
    this.delivered++;
    const pub = { channel: p.channel, data: p.data, offset: p.offset };
    this.handlers.onPublication?.(pub);
    this.tap?.(pub);
  }
  /** @internal presenceEvent hands a join or leave push to its handler. */
  presenceEvent(kind, info) {
    if (this.state === "unsubscribed" || !info || typeof info !== "object") return;
    if (kind === "join") this.handlers.onJoin?.(info);
    else this.handlers.onLeave?.(info);
  }
  /** @internal gap tells the subscriber its state is stale and moves to `pos`. */
  gap(reason, pos) {
    if (this.state === "unsubscribed") return;
    this.position = { offset: pos.offset, epoch: pos.epoch ?? this.position?.epoch };
    this.handlers.onGap?.({ channel: this.channel, reason, offset: pos.offset, epoch: pos.epoch });
  }
};

// src/shared.ts
var TAB_MESSAGES = /* @__PURE__ */ new Set(["join", "sub", "unsub", "bye", "req", "ping", "tok", "online"]);
function sharedSupport(env) {
  const g = globalThis;
  const locks = env?.locks ?? g.navigator?.locks;
  const BC = env?.BroadcastChannel ?? g.BroadcastChannel;
  const SW = env?.SharedWorker ?? g.SharedWorker;
  const ok = locks && typeof locks.request === "function" ? locks : void 0;
  if (!SW && !(ok && BC)) return null;
  return { locks: ok, BC, SW };
}
function fnv1a(s, basis) {
  let h = basis >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}
function identityKey(token) {
  if (!token) return "anonymous";
  let id = "t:" + token;
  const parts = token.split(".");
  if (parts.length === 3) {
    try {
      const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
      if (claims && typeof claims.sub === "string") id = "s:" + JSON.stringify([claims.iss ?? "", claims.sub]);
    } catch {
    }
  }
  return fnv1a(id, 2166136261) + fnv1a(id, 84696351);
}
var WireSub = class extends Subscription {
  constructor(channel, send, onUnsubscribe) {
    const ref = {};
    super(
      channel,
      {
        onPublication: (p) => send({ t: "pub", channel, data: p.data, offset: p.offset, epoch: ref.self?.position?.epoch }),
        onGap: (g) => send({ t: "gap", channel, reason: g.reason, offset: g.offset, epoch: g.epoch }),
        onError: (err) => send({ t: "failed", channel, message: err.message }),
        onJoin: (info) => send({ t: "presence", channel, kind: "join", info }),
        onLeave: (info) => send({ t: "presence", channel, kind: "leave", info })
      },
      onUnsubscribe
    );
    ref.self = this;
    this.send = send;
  }
  subscribed(pos, recovered, publications) {
    super.subscribed(pos, recovered, publications);
    if (this.state === "subscribed") this.send({ t: "subscribed", channel: this.channel, pos: this.at() });
  }
  /** at is the position the tabs join at. */
  at() {
    return this.position ? { ...this.position } : { offset: null };
  }
};
function lower(a, b) {
  if (!a || a.offset === null) return false;
  if (!b || b.offset === null) return true;
  if (a.epoch !== void 0 && b.epoch !== void 0 && a.epoch !== b.epoch) return false;
  return a.offset < b.offset;
}

// src/fossil.ts
var DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
var VALUE = (() => {
  const v = new Int8Array(256).fill(-1);
  for (let i = 0; i < DIGITS.length; i++) v[DIGITS.charCodeAt(i)] = i;
  return v;
})();
function checksum(b) {
  let sum = 0;
  let i = 0;
  for (; i + 4 <= b.length; i += 4) sum = sum + (b[i] << 24 | b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3]) >>> 0;
  let shift = 24;
  for (; i < b.length; i++, shift -= 8) sum = sum + (b[i] << shift) >>> 0;
  return sum >>> 0;
}
function applyDelta(src, delta) {
  let i = 0;
  const int = () => {
    const start = i;
    let n = 0;
    while (i < delta.length && VALUE[delta[i]] >= 0) {
      n = n * 64 + VALUE[delta[i++]];
      if (n > 4294967295) throw new Error("switchboard: malformed delta: integer too large");
    }
    if (i === start) throw new Error(`switchboard: malformed delta: expected a number at byte ${i}`);
    return n;
  };
  const size = int();
  if (delta[i++] !== 10) throw new Error("switchboard: malformed delta: no target length");
  const out = new Uint8Array(size);
  let o = 0;
  for (; ; ) {
    const n = int();
    const op = delta[i++];
    if (op === 64) {
      const off = int();
      if (delta[i++] !== 44) throw new Error("switchboard: malformed delta: bad copy command");
      if (off + n > src.length || o + n > size) throw new Error("switchboard: malformed delta: copy out of range");
      out.set(src.subarray(off, off + n), o);
      o += n;
    } else if (op === 58) {
      if (i + n > delta.length || o + n > size) throw new Error("switchboard: malformed delta: insert out of range");
      out.set(delta.subarray(i, i + n), o);
      o += n;
      i += n;
    } else if (op === 59) {
      if (i !== delta.length || o !== size) throw new Error("switchboard: malformed delta: target length");
      if (checksum(out) !== n) throw new Error("switchboard: malformed delta: checksum mismatch");
      return out;
    } else {
      throw new Error(`switchboard: malformed delta: unknown command at byte ${i - 1}`);
    }
  }
}
var encoder = new TextEncoder();
var decoder = new TextDecoder("utf-8", { fatal: true });
function applyTextDelta(prev, delta) {
  return decoder.decode(applyDelta(encoder.encode(prev), encoder.encode(delta)));
}

// src/ws.ts
var WebSocketTransport = class {
  constructor(ctx) {
    this.ctx = ctx;
    this.name = "websocket";
    this.ws = null;
    this.nextId = 1;
    this.pending = /* @__PURE__ */ new Map();
    this.connected = false;
    this.ended = false;
    /** subscribed: channels the server has (or is being asked for) on this connection. */
    this.subscribed = /* @__PURE__ */ new Map();
    /**
     * deltas: the delta subscriptions of this connection, each with the
     * text of the last publication the server sent on it (undefined before
     * the first), which the next delta applies to. A new connection starts
     * empty: the server sends the first publication of a subscribe whole.
     */
    this.deltas = /* @__PURE__ */ new Map();
    this.binary = ctx.protocol === "protobuf";
  }
  open() {
    const WS = this.ctx.env.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      if (!WS) throw new Error("no WebSocket");
      ws = this.binary ? new WS(this.ctx.wsURL, [SUBPROTOCOL]) : new WS(this.ctx.wsURL);
      if (this.binary) ws.binaryType = "arraybuffer";
    } catch (err) {
      setTimeout(() => this.end({ code: 0, reason: `websocket: ${String(err)}`, opened: false }));
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.onOpen();
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onclose = (e) => {
      const code = e.code === 1005 || e.code === 1006 ? 0 : e.code;
      this.end({
        code,
        reason: e.reason || "connection closed",
        opened: this.connected,
        tokenExpired: e.code === 4005,
        fatal: closeIsFatal(e.code)
      });
    };
    ws.onerror = () => {
    };
  }
  close() {
    this.ended = true;
    this.rejectAll();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1e3);
      } catch {
      }
    }
  }
  end(info) {
    if (this.ended) return;
    this.ended = true;
    this.rejectAll();
    if (this.ws) this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    this.ws = null;
    this.ctx.closed(info);
  }
  /**
   * startPinging checks the connection now and then: a browser does not
   * show the server's WebSocket pings, and a connection whose network
   * silently died can otherwise stay "open" for minutes. No answer within
   * the interval closes it (and the client reconnects and recovers).
   */
  startPinging() {
    const every = this.ctx.pingInterval;
    if (!(every > 0)) return;
    this.pinger = setInterval(() => {
      let answered = false;
      this.request({ command: "ping" }).then(
        () => answered = true,
        () => answered = true
      );
      setTimeout(() => {
        if (answered || this.ended) return;
        try {
          this.ws?.close(4e3);
        } catch {
        }
        this.end({ code: 0, reason: "no answer to ping", opened: true });
      }, every);
    }, every);
  }
  rejectAll() {
    clearInterval(this.pinger);
    const err = new DisconnectedError();
    for (const [, p] of this.pending) p.reject(err);
    this.pending.clear();
  }
  /** request sends a command with an id and resolves with its result. */
  request(command) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return Promise.reject(new DisconnectedError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        const cmd = { ...command, id };
        ws.send(this.binary ? encodeCommand(cmd) : JSON.stringify(cmd, jsonBytes));
      } catch (err) {
        this.pending.delete(id);
        reject(new DisconnectedError(String(err)));
      }
    });
  }
  async onOpen() {
    const every = this.ctx.pingInterval;
    const timer = every > 0 ? setTimeout(() => {
      if (this.connected || this.ended) return;
      try {
        this.ws?.close(4e3);
      } catch {
      }
      this.end({ code: 0, reason: "no answer to connect", opened: false });
    }, every) : void 0;
    try {
      const token = this.ctx.token();
      const res = await this.request(token ? { command: "connect", token } : { command: "connect" });
      clearTimeout(timer);
      this.connected = true;
      this.ctx.opened({ client: res?.client, expires: res?.expires });
      this.subscriptionsChanged();
      this.startPinging();
    } catch (err) {
      if (this.ended) return;
      const code = err instanceof ServerError ? err.code : 0;
      if (code === 419 || code === 401 || code === 403) {
        this.ws?.close(4e3);
        this.end({ code: code === 419 ? 4005 : 4502, reason: String(err), opened: false, tokenExpired: code === 419, fatal: code !== 419 });
      }
    }
  }
  subscriptionsChanged() {
    if (!this.connected || this.ended) return;
    const want = new Map(this.ctx.subscriptions().map((s) => [s.channel, s]));
    for (const [ch, sub] of this.subscribed) {
      if (want.get(ch) !== sub) {
        this.subscribed.delete(ch);
        this.deltas.delete(ch);
        this.request({ command: "unsubscribe", channel: ch }).catch(() => {
        });
      }
    }
    for (const [ch, sub] of want) {
      if (this.subscribed.get(ch) === sub) continue;
      this.subscribed.set(ch, sub);
      void this.subscribe(sub);
    }
  }
  async subscribe(sub) {
    const since = sub.since();
    const cmd = { command: "subscribe", channel: sub.channel };
    if (since) cmd.since = since;
    if (sub.delta) cmd.delta = sub.delta;
    try {
      const r = await this.request(cmd);
      if (this.subscribed.get(sub.channel) !== sub) return;
      let pubs = r.publications;
      this.deltas.delete(sub.channel);
      if (r.delta === true) {
        this.deltas.set(sub.channel, void 0);
        pubs = pubs?.map((p) => ({ ...p, data: this.deltaData(p) }));
        if (pubs?.some((p) => p.data === DeltaFailed)) return this.deltaFailed();
      }
      sub.subscribed({ offset: r.offset, epoch: r.epoch }, since ? r.recovered : void 0, pubs);
    } catch (err) {
      if (this.subscribed.get(sub.channel) !== sub) return;
      this.subscribed.delete(sub.channel);
      if (err instanceof ServerError && !err.temporary) {
        sub.failed(err);
      } else if (err instanceof ServerError && !this.ended) {
        setTimeout(() => this.subscriptionsChanged(), 1e3);
      }
    }
  }
  /**
   * serverSubscribed handles a subscribed push: the client makes (or
   * finds) the subscription, which starts at the push's position, with
   * its recovered publications, like a subscribe result.
   */
  serverSubscribed(channel, r) {
    if (this.subscribed.has(channel)) return;
    const sub = this.ctx.serverSubscribed?.(channel, r.data);
    if (!sub) return;
    this.subscribed.set(channel, sub);
    const pubs = Array.isArray(r.publications) ? r.publications : void 0;
    sub.subscribed({ offset: r.offset, epoch: r.epoch }, typeof r.recovered === "boolean" ? r.recovered : void 0, pubs);
  }
  publish(channel, data, key) {
    return this.request({ command: "publish", channel, data, idempotency_key: key });
  }
  async refresh(token) {
    await this.request({ command: "refresh", token });
  }
  /**
   * deltaData turns a publication of a delta subscription into its data:
   * the string is the data's JSON text, or with `delta` the fossil delta
   * from the previous publication's text. It returns DeltaFailed when
   * that cannot be done (which the server never causes).
   */
  deltaData(p) {
    const prev = this.deltas.get(p.channel);
    if (typeof p.data !== "string") {
      this.deltas.set(p.channel, void 0);
      return p.data;
    }
    try {
      const text2 = p.delta === true ? applyTextDelta(prev ?? fail(), p.data) : p.data;
      this.deltas.set(p.channel, text2);
      return JSON.parse(text2);
    } catch {
      return DeltaFailed;
    }
  }
  /**
   * deltaFailed drops the connection after a delta that did not apply:
   * the client reconnects and resubscribes from the last publication it
   * delivered, which the server then sends whole.
   */
  deltaFailed() {
    try {
      this.ws?.close(4e3);
    } catch {
    }
    this.end({ code: 0, reason: "a delta did not apply", opened: true });
  }
  onMessage(raw) {
    let msg;
    try {
      msg = raw instanceof ArrayBuffer ? decodeReply(new Uint8Array(raw)) : JSON.parse(String(raw));
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.id === "number") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new ServerError(msg.error.code, msg.error.message));
      else p.resolve(msg.result);
      return;
    }
    if (typeof msg.room === "string" && typeof msg.event === "string") {
      this.ctx.room?.(msg);
      return;
    }
    if (typeof msg.channel !== "string") return;
    if (msg.subscribed && typeof msg.subscribed === "object") {
      this.serverSubscribed(msg.channel, msg.subscribed);
      return;
    }
    if (msg.unsubscribed && typeof msg.unsubscribed === "object") {
      const sub2 = this.subscribed.get(msg.channel);
      if (!sub2) return;
      this.subscribed.delete(msg.channel);
      this.ctx.serverUnsubscribed?.(sub2, Number(msg.unsubscribed.code) || 0, String(msg.unsubscribed.reason ?? ""));
      return;
    }
    const sub = this.subscribed.get(msg.channel);
    if (!sub || sub.state === "unsubscribed") return;
    if (typeof msg.offset === "number" && "data" in msg) {
      let data = msg.data;
      if (this.deltas.has(msg.channel)) {
        data = this.deltaData(msg);
        if (data === DeltaFailed) return this.deltaFailed();
      }
      sub.deliver({ channel: msg.channel, data, offset: msg.offset });
    } else if (msg.reset) {
      if (this.deltas.has(msg.channel)) this.deltas.set(msg.channel, void 0);
      sub.gap("reset", { offset: msg.reset.offset, epoch: msg.reset.epoch });
    } else if (msg.join) {
      sub.presenceEvent("join", msg.join);
    } else if (msg.leave) {
      sub.presenceEvent("leave", msg.leave);
    }
  }
};
var DeltaFailed = /* @__PURE__ */ Symbol("delta failed");
function fail() {
  throw new Error("switchboard: a delta with no previous publication");
}

// src/room.ts
var LAYERS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 15e4 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 5e5 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 15e5 }
];
var Signal = class {
  constructor(PC, config, send) {
    this.send = send;
    /** restarts: ICE restarts since the connection was last connected. */
    this.restarts = 0;
    /** restartTimer: a "disconnected" that waits out iceRestartDelay. */
    this.restartTimer = 0;
    /** reoffer: our offer was rolled back for the peer's (P2P): offer again after answering. */
    this.reoffer = false;
    /** answers counts the answers this connection gave to the server's offers. */
    this.answers = 0;
    this.ready = false;
    // the other side has our description
    this.outbox = [];
    this.inbox = [];
    /** chain serialises this connection's negotiation steps. */
    this.chain = Promise.resolve();
    this.pc = new PC(config);
    this.pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      if (this.ready) this.send(e.candidate);
      else this.outbox.push(e.candidate);
    };
  }
  /** delivered: the other side has our description; queued candidates go out. */
  delivered() {
    this.ready = true;
    for (const c of this.outbox.splice(0)) this.send(c);
  }
  async remote(desc) {
    await this.pc.setRemoteDescription(desc);
    for (const c of this.inbox.splice(0)) await this.pc.addIceCandidate(c).catch(() => {
    });
  }
  async candidate(c) {
    if (!this.pc.remoteDescription) {
      this.inbox.push(c);
      return;
    }
    await this.pc.addIceCandidate(c).catch(() => {
    });
  }
  /** run queues step after the connection's earlier steps. */
  run(step) {
    const p = this.chain.then(step, step);
    this.chain = p.catch(() => {
    });
    return p;
  }
};
var Room = class {
  constructor(name, opts, link) {
    /** participantId is this client's id in the room. */
    this.participantId = "";
    /** mode is the room's mode, as the server decided. */
    this.mode = "sfu";
    /** canPublish: the server lets this client publish. */
    this.canPublish = false;
    /** iceServers are those of the join reply (or the options). */
    this.iceServers = [];
    /** participants are the others in the room, by id. */
    this.participants = /* @__PURE__ */ new Map();
    /** speakers: the participants speaking now, loudest first. */
    this.speakers = [];
    /** closed is set once the room is over for this client. */
    this.closed = false;
    this.emitter = new Emitter();
    this.joined = false;
    this.early = [];
    this.pub = null;
    this.sub = null;
    this.peer = null;
    // P2P
    this.peerId = "";
    // P2P: the other participant
    this.local = [];
    this.localStream = null;
    this.observers = /* @__PURE__ */ new Map();
    this.renewTimer = 0;
    this.name = name;
    this.opts = opts;
    this.link = link;
    this.PC = opts.env?.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    if (opts.stream) {
      this.localStream = opts.stream;
      this.local = opts.stream.getTracks();
    }
  }
  on(name, fn) {
    return this.emitter.on(name, fn);
  }
  off(name, fn) {
    this.emitter.off(name, fn);
  }
  cmd(command, data = {}) {
    return this.link.command({ command, data: { room: this.name, ...data } });
  }
  config() {
    const c = { iceServers: this.iceServers };
    if (this.opts.relay) c.iceTransportPolicy = "relay";
    return c;
  }
  fail(err) {
    if (this.closed) return;
    this.emitter.emit("error", err instanceof Error ? err : new Error(String(err)));
  }
  /** join sends room_join and sets the room up; client.joinRoom calls it. */
  async join() {
    if (!this.PC) throw new Error("switchboard: calls need RTCPeerConnection");
    const data = {};
    if (this.opts.mode) data.mode = this.opts.mode;
    if (this.opts.codec) data.codec = this.opts.codec;
    const r = await this.cmd("room_join", data);
    this.participantId = r.participant;
    this.mode = r.mode === "p2p" ? "p2p" : "sfu";
    this.canPublish = !!r.can_publish;
    this.iceServers = this.opts.iceServers ?? r.ice_servers ?? [];
    this.scheduleRenewal(r.ice_servers_expire);
    for (const p of r.participants ?? []) {
      const rp = this.addParticipant(p.participant, p.user ?? "");
      for (const t of p.tracks ?? []) this.trackInfo(rp, t);
    }
    if (this.mode === "sfu") {
      this.sub = this.signal("subscriber");
      this.sub.pc.ontrack = (e) => this.onTrack(e);
    }
    this.joined = true;
    for (const m of this.early.splice(0)) this.push(m.event, m.data);
    if (this.mode === "sfu") {
      if (this.local.length) await this.publishSFU(this.local).catch((err) => setTimeout(() => this.fail(err)));
    } else if (this.participants.size > 0) {
      this.peerId = [...this.participants.keys()][0];
      await this.offerP2P();
    }
    return this;
  }
  signal(name) {
    const target = name === "peer" ? void 0 : name;
    const s = new Signal(this.PC, this.config(), (c) => {
      const data = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
      if (target) data.target = target;
      this.cmd("room_candidate", data).catch((err) => this.fail(err));
    });
    s.pc.onconnectionstatechange = () => this.emitter.emit("connection", { pc: name, state: s.pc.connectionState });
    s.pc.oniceconnectionstatechange = () => this.iceState(name, s);
    return s;
  }
  // ---- ICE restarts and TURN credential renewal ----
  /** current returns the room's connection of that name now. */
  current(name) {
    return name === "publisher" ? this.pub : name === "subscriber" ? this.sub : this.peer;
  }
  /**
   * iceState restarts ICE on a connection whose path broke: "failed" at
   * once, "disconnected" once it lasted iceRestartDelay. At most
   * MAX_RESTARTS in a row without getting connected in between: past
   * that, the server's own timeouts decide (it removes a participant
   * whose connection failed for good, with a "kicked" push).
   */
  iceState(name, s) {
    if (this.closed || this.current(name) !== s) return;
    const st = s.pc.iceConnectionState;
    clearTimeout(s.restartTimer);
    if (st === "connected" || st === "completed") {
      s.restarts = 0;
    } else if (st === "failed") {
      this.restartIce(name, s, "failed");
    } else if (st === "disconnected") {
      s.restartTimer = setTimeout(() => {
        const now = s.pc.iceConnectionState;
        if (now === "disconnected" || now === "failed") this.restartIce(name, s, "disconnected");
      }, this.opts.iceRestartDelay ?? 2e3);
    }
  }
  /**
   * restartIce restarts ICE through the signaling: the publishing and P2P
   * connections offer with iceRestart; the subscribing connection, which
   * the server offers, asks the server for a restarting offer (room_ice).
   */
  restartIce(name, s, reason) {
    if (this.closed || this.current(name) !== s) return Promise.resolve();
    if (reason !== "renewal") {
      if (s.restarts >= MAX_RESTARTS) return Promise.resolve();
      s.restarts++;
    }
    this.emitter.emit("iceRestart", { pc: name, reason });
    let p;
    if (name === "publisher") p = this.offerSFU(true);
    else if (name === "subscriber") p = this.renewIce(true);
    else p = this.peerId ? this.offerP2P(true) : Promise.resolve();
    return p.catch((err) => this.fail(err));
  }
  /**
   * scheduleRenewal asks for fresh ICE servers before the TURN
   * credentials expire (at expire, Unix seconds): a quarter of their
   * remaining life before, at most 5 minutes before.
   */
  scheduleRenewal(expire) {
    clearTimeout(this.renewTimer);
    if (this.closed || this.opts.iceServers || typeof expire !== "number" || !(expire > 0)) return;
    const remaining = expire * 1e3 - Date.now();
    const lead = Math.min(3e5, Math.max(remaining / 4, 0));
    this.renewTimer = setTimeout(() => void this.renew(), Math.max(0, remaining - lead));
  }
  /**
   * renew fetches fresh ICE servers (room_ice), applies them to every
   * connection (setConfiguration), and restarts ICE on the connections
   * that go through a TURN relay, so that they allocate again with the
   * new credentials before the old ones stop being accepted. A failure is
   * retried after 10 s.
   */
  async renew() {
    if (this.closed) return;
    try {
      const sub = this.sub;
      const restartSub = !!sub && await usesRelay(sub.pc, this.opts.relay);
      const answered = sub?.answers ?? 0;
      await this.renewIce(restartSub);
      if (restartSub && sub) {
        this.emitter.emit("iceRestart", { pc: "subscriber", reason: "renewal" });
        await this.reconnected(sub, answered);
      }
      for (const name of ["publisher", "peer"]) {
        const s = this.current(name);
        if (s && await usesRelay(s.pc, this.opts.relay)) await this.restartIce(name, s, "renewal");
      }
    } catch (err) {
      if (this.closed) return;
      this.fail(err);
      this.renewTimer = setTimeout(() => void this.renew(), 1e4);
    }
  }
  /**
   * reconnected waits until the subscribing connection answered the
   * server's restarting offer and is connected again, for at most five
   * times iceRestartDelay (10 s by default).
   */
  async reconnected(s, answered) {
    const end = Date.now() + 5 * (this.opts.iceRestartDelay ?? 2e3);
    while (!this.closed && Date.now() < end) {
      const st = s.pc.iceConnectionState;
      if (s.answers > answered && (st === "connected" || st === "completed")) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  /** renewIce asks for fresh ICE servers, and with restartSubscriber for the server's restarting offer, and applies them. */
  async renewIce(restartSubscriber) {
    const data = {};
    if (restartSubscriber) data.restart = "subscriber";
    const r = await this.cmd("room_ice", data);
    if (this.closed || this.opts.iceServers) return;
    if (Array.isArray(r?.ice_servers)) {
      this.iceServers = r.ice_servers;
      for (const s of [this.pub, this.sub, this.peer]) {
        try {
          s?.pc.setConfiguration?.(this.config());
        } catch (err) {
          this.fail(err);
        }
      }
      this.emitter.emit("iceServers", { iceServers: this.iceServers, expires: r.ice_servers_expire ?? 0 });
    }
    this.scheduleRenewal(r?.ice_servers_expire);
  }
  /** pc returns a PeerConnection of the room, for getStats: "publisher", "subscriber" (SFU) or "peer" (P2P). */
  pc(name) {
    return (name === "publisher" ? this.pub : name === "subscriber" ? this.sub : this.peer)?.pc ?? null;
  }
  // ---- publishing ----
  /** publish sends local tracks (audio and video of a getUserMedia stream). */
  async publish(stream) {
    this.localStream = stream;
    const tracks = stream.getTracks().filter((t) => !this.local.includes(t));
    this.local.push(...tracks);
    if (!this.joined || this.closed) return;
    if (this.mode === "sfu") await this.publishSFU(tracks);
    else if (this.peer) {
      for (const t of tracks) this.peer.pc.addTrack(t, stream);
      await this.offerP2P();
    }
  }
  async publishSFU(tracks) {
    if (!this.canPublish) throw new Error(`switchboard: no permission to publish in room ${this.name}`);
    if (!this.pub) this.pub = this.signal("publisher");
    const pub = this.pub;
    const stream = this.localStream ?? void 0;
    for (const t of tracks) {
      await this.cmd("room_publish", { track: t.id, source: t.kind === "video" ? "camera" : "microphone" }).catch(() => {
      });
      const init = { direction: "sendonly", streams: stream ? [stream] : [] };
      if (t.kind === "video" && this.opts.simulcast !== false) init.sendEncodings = LAYERS.map((l) => ({ ...l }));
      pub.pc.addTransceiver(t, init);
    }
    await this.offerSFU();
  }
  /** offerSFU sends the publishing connection's offer and applies the answer. */
  offerSFU(iceRestart = false) {
    const pub = this.pub;
    return pub.run(async () => {
      const offer = await pub.pc.createOffer(iceRestart ? { iceRestart: true } : void 0);
      await pub.pc.setLocalDescription(offer);
      const r = await this.cmd("room_offer", { sdp: pub.pc.localDescription.sdp });
      await pub.remote({ type: "answer", sdp: r.sdp });
      pub.delivered();
    });
  }
  /** unpublish stops sending a local track (the others see track_unpublished). */
  async unpublish(track) {
    this.local = this.local.filter((t) => t !== track);
    const s = this.pub ?? this.peer;
    if (!s) return;
    const sender = s.pc.getSenders().find((x) => x.track === track);
    if (!sender) return;
    if (this.mode === "sfu") await this.cmd("room_unpublish", { track: `${this.participantId}:${track.id}` }).catch(() => {
    });
    s.pc.removeTrack(sender);
    if (this.mode === "sfu") await this.offerSFU();
    else await this.offerP2P();
  }
  /**
   * mute stops (or resumes) sending "audio", "video", or every local track
   * (kind omitted): the track is disabled here and the server stops
   * forwarding it and tells the others.
   */
  async mute(kind, muted) {
    for (const t of this.local) if (!kind || t.kind === kind) t.enabled = !muted;
    if (this.mode === "sfu" && this.pub) await this.cmd("room_mute", { track: kind ?? "", muted });
  }
  /** isMuted reports whether every local track of kind is disabled. */
  isMuted(kind) {
    const ts = this.local.filter((t) => t.kind === kind);
    return ts.length > 0 && ts.every((t) => !t.enabled);
  }
  // ---- subscribing ----
  /**
   * setLayer caps the simulcast layer the server forwards of a remote
   * video: maxLayer 0 (low) to 2 (high), and/or width and height (the
   * server forwards the largest layer no bigger). SFU rooms only.
   */
  async setLayer(track, pref) {
    if (this.mode !== "sfu") return;
    const data = { track };
    if (pref.maxLayer !== void 0) data.max_layer = pref.maxLayer;
    if (pref.width) data.max_width = Math.round(pref.width);
    if (pref.height) data.max_height = Math.round(pref.height);
    if (pref.paused) data.paused = true;
    await this.cmd("room_subscribe", data);
  }
  /**
   * attach shows a participant's media in a video (or audio) element and,
   * in an SFU room, keeps the layer of its video matched to the element's
   * displayed size: the smallest layer at least as large (a
   * ResizeObserver; devicePixelRatio counted). It
   * returns a function that stops the matching.
   */
  attach(participant, el) {
    const p = this.participants.get(participant);
    if (p?.stream && el.srcObject !== p.stream) el.srcObject = p.stream;
    const RO = this.opts.env?.ResizeObserver ?? globalThis.ResizeObserver;
    if (this.mode !== "sfu" || !RO) return () => {
    };
    let timer = 0;
    let last = "";
    const update = () => {
      const q = this.participants.get(participant);
      const v = q && [...q.tracks.values()].find((t) => t.kind === "video");
      if (!v) return;
      const ratio = globalThis.devicePixelRatio || 1;
      const w = Math.round((el.clientWidth || 0) * ratio);
      const h = Math.round((el.clientHeight || 0) * ratio);
      const key = `${v.id} ${w} ${h}`;
      if (!w || !h || key === last) return;
      last = key;
      this.setLayer(v.id, { width: 2 * w - 1, height: 2 * h - 1 }).catch(() => {
      });
    };
    const obs = new RO(() => {
      clearTimeout(timer);
      timer = setTimeout(update, 200);
    });
    obs.observe(el);
    const off = this.on("track", (t) => {
      if (t.participant === participant && t.kind === "video") {
        last = "";
        update();
      }
    });
    const stop = { disconnect: () => {
      obs.disconnect();
      off();
      clearTimeout(timer);
    } };
    this.observers.get(participant)?.disconnect();
    this.observers.set(participant, stop);
    return () => {
      stop.disconnect();
      if (this.observers.get(participant) === stop) this.observers.delete(participant);
    };
  }
  addParticipant(id, user) {
    let p = this.participants.get(id);
    if (!p) {
      p = { id, user, tracks: /* @__PURE__ */ new Map(), stream: null };
      this.participants.set(id, p);
    }
    return p;
  }
  /** trackInfo records a track the server announced. */
  trackInfo(p, t) {
    let rt = p.tracks.get(t.track);
    if (!rt) {
      rt = { id: t.track, participant: p.id, kind: t.kind === "audio" ? "audio" : "video", track: null, muted: !!t.muted, layer: -1 };
      p.tracks.set(rt.id, rt);
    }
    rt.muted = !!t.muted;
    if (t.source) rt.source = t.source;
    if (t.name) rt.name = t.name;
    return rt;
  }
  onTrack(e) {
    const track = e.track;
    let pid = this.mode === "p2p" ? this.peerId : e.streams[0]?.id ?? "";
    let id = track.id;
    if (this.mode === "sfu") {
      const owner = [...this.participants.values()].find((p2) => p2.tracks.has(id));
      if (owner) pid = owner.id;
      else if (!pid && id.includes(":")) pid = id.slice(0, id.lastIndexOf(":"));
    } else if (!pid) return;
    const p = this.addParticipant(pid, this.participants.get(pid)?.user ?? "");
    if (!p.stream) p.stream = e.streams[0] ?? newStream([]);
    else if (!p.stream.getTracks().includes(track)) p.stream.addTrack(track);
    let rt = p.tracks.get(id);
    if (!rt) {
      rt = { id, participant: pid, kind: track.kind === "audio" ? "audio" : "video", track: null, muted: false, layer: -1 };
      p.tracks.set(id, rt);
    }
    rt.track = track;
    const done = rt;
    track.addEventListener?.("ended", () => this.endTrack(p, done));
    this.emitter.emit("track", rt);
  }
  endTrack(p, t) {
    if (p.tracks.get(t.id) !== t) return;
    p.tracks.delete(t.id);
    if (t.track && p.stream) p.stream.removeTrack(t.track);
    this.emitter.emit("trackEnded", t);
  }
  // ---- P2P ----
  ensurePeer() {
    if (this.peer) return this.peer;
    const s = this.signal("peer");
    s.pc.ontrack = (e) => this.onTrack(e);
    this.peer = s;
    return s;
  }
  /** addLocal adds the local tracks the peer connection does not send yet. */
  addLocal(s) {
    const senders = s.pc.getSenders().map((x) => x.track);
    const stream = this.localStream ?? newStream(this.local);
    for (const t of this.local) if (!senders.includes(t)) s.pc.addTrack(t, ...stream ? [stream] : []);
  }
  offerP2P(iceRestart = false) {
    const s = this.ensurePeer();
    return s.run(async () => {
      this.addLocal(s);
      if (!this.local.some((t) => t.kind === "audio") && !s.pc.getTransceivers().some((x) => x.receiver.track?.kind === "audio")) {
        s.pc.addTransceiver("audio", { direction: "recvonly" });
      }
      if (!this.local.some((t) => t.kind === "video") && !s.pc.getTransceivers().some((x) => x.receiver.track?.kind === "video")) {
        s.pc.addTransceiver("video", { direction: "recvonly" });
      }
      const offer = await s.pc.createOffer(iceRestart ? { iceRestart: true } : void 0);
      await s.pc.setLocalDescription(offer);
      await this.cmd("room_offer", { sdp: s.pc.localDescription.sdp });
      s.delivered();
    });
  }
  answerP2P(from, sdp) {
    this.peerId = from;
    this.addParticipant(from, this.participants.get(from)?.user ?? "");
    const s = this.ensurePeer();
    return s.run(async () => {
      if (s.pc.signalingState === "have-local-offer") {
        if (this.participantId < from) return;
        await s.pc.setLocalDescription({ type: "rollback" });
        s.reoffer = true;
      }
      await s.remote({ type: "offer", sdp });
      this.addLocal(s);
      const answer2 = await s.pc.createAnswer();
      await s.pc.setLocalDescription(answer2);
      await this.cmd("room_answer", { sdp: s.pc.localDescription.sdp });
      s.delivered();
      if (s.reoffer) {
        s.reoffer = false;
        void this.offerP2P().catch((err) => this.fail(err));
      }
    });
  }
  closePeer() {
    this.peer?.pc.close();
    this.peer = null;
    this.peerId = "";
  }
  // ---- pushes ----
  /** push handles one room push of the server; the client routes them here. */
  push(event, data) {
    if (this.closed) return;
    if (!this.joined) {
      this.early.push({ event, data });
      return;
    }
    data = data ?? {};
    if (event.startsWith("track_") && data.participant === this.participantId) return;
    switch (event) {
      case "offer":
        if (this.mode === "p2p") {
          this.answerP2P(data.from, data.sdp).catch((err) => this.fail(err));
          return;
        }
        this.answerSFU(data.sdp).catch((err) => this.fail(err));
        return;
      case "answer":
        if (this.peer) {
          const s = this.peer;
          s.run(() => s.remote({ type: "answer", sdp: data.sdp })).catch((err) => this.fail(err));
        }
        return;
      case "candidate":
        if (this.mode === "p2p") {
          const init = { candidate: data.candidate, sdpMid: data.sdpMid ?? null, sdpMLineIndex: data.sdpMLineIndex ?? null };
          this.ensurePeer().candidate(init);
        }
        return;
      case "participant_joined": {
        const p = this.addParticipant(data.participant, data.user ?? "");
        this.emitter.emit("participantJoined", p);
        return;
      }
      case "participant_left": {
        const p = this.participants.get(data.participant);
        if (!p) return;
        this.participants.delete(p.id);
        for (const t of [...p.tracks.values()]) this.endTrack(p, t);
        this.observers.get(p.id)?.disconnect();
        this.observers.delete(p.id);
        if (this.mode === "p2p" && this.peerId === p.id) this.closePeer();
        this.emitter.emit("participantLeft", { participant: p, reason: data.reason ?? "" });
        return;
      }
      case "track_published": {
        const p = this.addParticipant(data.participant, this.participants.get(data.participant)?.user ?? "");
        this.trackInfo(p, data);
        return;
      }
      case "track_unpublished": {
        const p = this.participants.get(data.participant);
        const t = p?.tracks.get(data.track);
        if (p && t) this.endTrack(p, t);
        return;
      }
      case "track_muted": {
        const t = this.participants.get(data.participant)?.tracks.get(data.track);
        if (t) t.muted = !!data.muted;
        this.emitter.emit("muted", { participant: data.participant, track: data.track, muted: !!data.muted });
        return;
      }
      case "speakers":
        this.speakers = Array.isArray(data.speakers) ? data.speakers : [];
        this.emitter.emit("speakers", this.speakers);
        return;
      case "layer": {
        for (const p of this.participants.values()) {
          const t = p.tracks.get(data.track);
          if (t) t.layer = data.layer;
        }
        this.emitter.emit("layer", { track: data.track, layer: data.layer });
        return;
      }
      case "kicked":
        this.end(typeof data.reason === "string" && data.reason ? data.reason : "kicked");
        return;
    }
  }
  answerSFU(sdp) {
    const s = this.sub;
    return s.run(async () => {
      await s.remote({ type: "offer", sdp });
      const answer2 = await s.pc.createAnswer();
      await s.pc.setLocalDescription(answer2);
      await this.cmd("room_answer", { sdp: s.pc.localDescription.sdp });
      s.delivered();
      s.answers++;
    });
  }
  /** disconnected: the client's connection ended, and with it the room on the server. */
  disconnected() {
    this.end("disconnected");
  }
  /** leave hangs up: the server removes this participant, the connections close. Local tracks are not stopped. */
  async leave() {
    if (this.closed) return;
    const r = this.cmd("room_leave").catch(() => {
    });
    this.end("left");
    await r;
  }
  end(reason) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.renewTimer);
    for (const s of [this.pub, this.sub, this.peer]) clearTimeout(s?.restartTimer);
    for (const o of this.observers.values()) o.disconnect();
    this.observers.clear();
    this.pub?.pc.close();
    this.sub?.pc.close();
    this.peer?.pc.close();
    this.link.forget();
    this.emitter.emit("closed", { reason });
  }
};
var MAX_RESTARTS = 3;
async function usesRelay(pc, relay) {
  if (relay) return true;
  try {
    const stats = await pc.getStats();
    const byId = /* @__PURE__ */ new Map();
    let pair;
    stats.forEach((r) => {
      byId.set(r.id, r);
      if (r.type === "transport" && r.selectedCandidatePairId) pair = r.selectedCandidatePairId;
    });
    if (!pair) {
      stats.forEach((r) => {
        if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r.id;
      });
    }
    const local = pair ? byId.get(byId.get(pair)?.localCandidateId) : void 0;
    return local?.candidateType === "relay";
  } catch {
    return false;
  }
}
function newStream(tracks) {
  const MS = globalThis.MediaStream;
  return MS ? new MS(tracks) : null;
}

// src/client.ts
function defaultWorkerUrl() {
  try {
    return new URL("./switchboard-worker.js", import.meta.url).href;
  } catch {
    return void 0;
  }
}
var nullBus = { post() {
}, close() {
} };
var ALL = ["websocket", "sse", "poll"];
function endpoints(url) {
  const u = new URL(url, globalThis.location?.href);
  let path = u.pathname.replace(/\/+$/, "");
  if (path.endsWith("/ws")) path = path.slice(0, -3);
  const secure = u.protocol === "wss:" || u.protocol === "https:";
  const host = u.host;
  return {
    ws: `${secure ? "wss" : "ws"}://${host}${path}/ws`,
    http: `${secure ? "https" : "http"}://${host}${path}`
  };
}
function tokenExpiry(token) {
  if (!token) return 0;
  try {
    const part = token.split(".")[1];
    const json2 = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json2).exp;
    return typeof exp === "number" ? exp : 0;
  } catch {
    return 0;
  }
}
function retryable(err) {
  if (err instanceof DisconnectedError) return true;
  if (err instanceof ServerError) return err.temporary || err.code === 419 || err.code === 401;
  return true;
}
var Switchboard = class {
  constructor(url, opts = {}) {
    this.emitter = new Emitter();
    this.subs = /* @__PURE__ */ new Map();
    this.order = [];
    this.transport = null;
    this.index = 0;
    this.failures = 0;
    this.tokenStale = false;
    this.closedForGood = false;
    this.stopped = null;
    // set when the server refused us for good
    this.timers = { reconnect: 0, stable: 0, refresh: 0, upgrade: 0 };
    this.onlineHandler = () => this.wentOnline();
    this.offlineHandler = () => this.wentOffline();
    this.waiters = [];
    this.attempts = 0;
    // connection attempts since the last connection
    this.rooms = /* @__PURE__ */ new Map();
    this.shared = null;
    this.starting = Promise.resolve();
    /** state is the current connection state. */
    this.state = "disconnected";
    this.opts = opts;
    this.urls = endpoints(url);
    this.transports = opts.transports?.length ? [...opts.transports] : [...ALL];
    for (const t of this.transports) {
      if (!ALL.includes(t)) throw new TypeError(`switchboard: unknown transport ${t}`);
    }
    this.backoff = new Backoff(opts.backoff);
    this.token = opts.token;
    const store = opts.outbox === false ? new MemoryOutboxStore() : opts.outbox ?? defaultStore();
    const support = !opts.hub && opts.sharedConnection !== false ? sharedSupport(opts.env) : null;
    this.box = new Outbox(store, this.urls.http, retryable, !support && !opts.hub);
    this.box.onChange = () => this.outboxChanged();
    this.wsubs = this.subs;
    this.worder = this.order;
    const g = globalThis;
    g.addEventListener?.("online", this.onlineHandler);
    g.addEventListener?.("offline", this.offlineHandler);
    if (opts.hub) {
      this.startHub(opts.hub);
    } else if (support) {
      this.wsubs = /* @__PURE__ */ new Map();
      this.worder = [];
      this.shared = {
        tab: randomKey(),
        mode: "starting",
        name: "",
        bus: nullBus,
        leader: false,
        release: () => {
        },
        tabLock: () => {
        },
        refs: /* @__PURE__ */ new Map(),
        joined: /* @__PURE__ */ new Set(),
        pending: /* @__PURE__ */ new Map(),
        transport: this.transports[0],
        gathering: false,
        pageHide: () => this.sharedBye(),
        pageShow: (ev) => {
          if (ev?.persisted) this.announce();
        },
        view: [],
        worker: null,
        heard: false,
        awaiting: false,
        ping: 0,
        outboxTimer: 0,
        persisting: Promise.resolve(),
        handing: /* @__PURE__ */ new Map(),
        watched: /* @__PURE__ */ new Set()
      };
      g.addEventListener?.("pagehide", this.shared.pageHide);
      g.addEventListener?.("pageshow", this.shared.pageShow);
      this.starting = this.startSharing(support);
    } else {
      queueMicrotask(() => this.connect());
    }
  }
  // ---- sharedConnection ----
  /** leader says whether this client holds the shared connection (always true without sharing). */
  get leading() {
    return !this.shared || this.shared.leader;
  }
  timing(k, def) {
    return this.opts.sharedTimings?.[k] ?? def;
  }
  /**
   * startSharing finds who the connection is for (a getToken is asked
   * once now when there is no token), then joins the SharedWorker of that
   * server and identity, or the Web Locks election, or gives up sharing.
   */
  async startSharing(sp) {
    const sh = this.shared;
    if (!this.token && this.opts.getToken) {
      try {
        this.token = await this.opts.getToken();
      } catch (err) {
        this.error(err);
        this.unshare();
        return;
      }
    }
    if (this.closedForGood) return;
    const who = identityKey(this.token);
    sh.name = `switchboard:${this.urls.http}:${who}`;
    this.box.setScope(sharedScope(this.urls.http, who));
    if (sp.locks) await this.holdTabLock(sp.locks);
    if (this.closedForGood) return;
    if (sp.SW && this.opts.workerUrl !== false && this.startWorker(sp)) return;
    if (sp.locks && sp.BC) {
      this.startLocks(sp.locks, sp.BC);
      return;
    }
    this.unshare();
  }
  /**
   * holdTabLock takes a lock only this client holds, until it closes or
   * its page goes: the holder of the connection waits for it to learn
   * that the tab is gone, however it went.
   */
  holdTabLock(locks) {
    const sh = this.shared;
    return new Promise((granted) => {
      const held = new Promise((r) => sh.tabLock = r);
      locks.request(tabLockName(sh.tab), () => {
        sh.tabLocked = true;
        granted();
        return held;
      }).catch(() => granted());
    });
  }
  startWorker(sp) {
    const sh = this.shared;
    const g = globalThis;
    const raw = this.opts.workerUrl ?? defaultWorkerUrl();
    if (!raw) return false;
    let url;
    try {
      url = new URL(String(raw), g.location?.href);
    } catch {
      return false;
    }
    if (g.location?.origin && url.origin !== g.location.origin) return false;
    let w;
    try {
      w = new sp.SW(url.href, { name: sh.name, type: "module" });
    } catch {
      return false;
    }
    sh.mode = "worker";
    sh.worker = w;
    sh.heard = false;
    sh.awaiting = false;
    const port = w.port;
    port.onmessage = (ev) => {
      if (sh.worker !== w) return;
      sh.heard = true;
      sh.awaiting = false;
      this.sharedMessage(ev.data);
    };
    w.addEventListener?.("error", () => {
      if (sh.worker === w && !sh.heard) this.workerFailed(sp);
    });
    port.start?.();
    sh.bus = {
      post: (m) => port.postMessage(m),
      close: () => port.close()
    };
    clearInterval(sh.ping);
    sh.ping = setInterval(() => this.checkWorker(sp), this.timing("ping", 4e3));
    this.announce();
    return true;
  }
  /**
   * checkWorker pings the worker; one that has not answered since the last
   * ping is gone (it crashed, the browser stopped it): the tab starts (or
   * reaches) it again and joins anew. One that never answered at all is
   * given up for the Web Locks way.
   */
  checkWorker(sp) {
    const sh = this.shared;
    if (!sh || sh.mode !== "worker" || this.closedForGood) return;
    if (!sh.awaiting) {
      sh.awaiting = true;
      this.post({ t: "ping", tab: sh.tab });
      return;
    }
    if (!sh.heard) {
      this.workerFailed(sp);
      return;
    }
    sh.bus.close();
    sh.worker = null;
    sh.joined.clear();
    if (!this.startWorker(sp)) this.workerFailed(sp);
  }
  workerFailed(sp) {
    const sh = this.shared;
    clearInterval(sh.ping);
    sh.bus.close();
    sh.bus = nullBus;
    sh.worker = null;
    sh.joined.clear();
    if (sp.locks && sp.BC) this.startLocks(sp.locks, sp.BC);
    else this.unshare();
  }
  startLocks(locks, BC) {
    const sh = this.shared;
    sh.mode = "locks";
    sh.locks = locks;
    const bc = new BC(sh.name);
    bc.onmessage = (ev) => this.sharedMessage(ev.data);
    sh.bus = {
      post: (m) => bc.postMessage(m),
      close: () => bc.close()
    };
    const held = new Promise((r) => sh.release = r);
    locks.request(sh.name, () => {
      if (this.closedForGood) return Promise.resolve();
      this.becomeLeader();
      return held;
    }).catch(() => {
    });
    this.announce();
  }
  /** startHub makes this client the connection of a SharedWorker: it leads from the start. */
  startHub(bus) {
    this.box.setScope(sharedScope(this.urls.http, identityKey(this.token)));
    this.wsubs = /* @__PURE__ */ new Map();
    this.worder = [];
    this.shared = {
      tab: "hub",
      mode: "hub",
      name: "",
      bus,
      leader: false,
      release: () => {
      },
      tabLock: () => {
      },
      refs: /* @__PURE__ */ new Map(),
      joined: /* @__PURE__ */ new Set(),
      pending: /* @__PURE__ */ new Map(),
      transport: this.transports[0],
      gathering: false,
      pageHide: () => {
      },
      pageShow: () => {
      },
      view: [],
      worker: null,
      heard: true,
      awaiting: false,
      ping: 0,
      outboxTimer: 0,
      persisting: Promise.resolve(),
      handing: /* @__PURE__ */ new Map(),
      watched: /* @__PURE__ */ new Set()
    };
    this.becomeLeader();
  }
  /** hubMessage hands the core of a SharedWorker a message of one of its tabs. @internal */
  hubMessage(m) {
    this.sharedMessage(m);
  }
  /** hubRefs lists the tabs subscribed to a channel. @internal */
  hubRefs(channel) {
    return this.shared?.refs.get(channel);
  }
  /**
   * unshare gives up sharing: this client connects on its own, and what it
   * asked of the holder it does itself.
   */
  unshare() {
    const sh = this.shared;
    if (!sh) return;
    this.shared = null;
    clearInterval(sh.ping);
    sh.bus.close();
    sh.tabLock();
    const g = globalThis;
    g.removeEventListener?.("pagehide", sh.pageHide);
    g.removeEventListener?.("pageshow", sh.pageShow);
    this.wsubs = this.subs;
    this.worder = this.order;
    void this.box.sync();
    for (const p of sh.pending.values()) {
      const m = p.msg;
      const r = m.op === "publish" ? this.box.add(m.channel, m.data, m.key, m.seq) : this.command(m.cmd, true);
      r.then(p.resolve, p.reject);
    }
    if (!this.closedForGood) void this.connect();
  }
  post(m) {
    try {
      this.shared?.bus.post(m);
    } catch {
    }
  }
  /** fanout sends a leader message to the other tabs and handles it here. */
  fanout(m) {
    this.post(m);
    this.fromLeader(m);
  }
  /** toLeader sends a tab message to the leader, which may be this tab. */
  toLeader(m) {
    if (this.shared?.leader) this.fromTab(m);
    else this.post(m);
  }
  /**
   * announce tells the holder who this tab is and what it holds: its
   * subscriptions with the position each delivered last, and the requests
   * still unanswered (a new holder answers them; a publish keeps its key).
   */
  announce() {
    const sh = this.shared;
    if (!sh || sh.leader || this.closedForGood) return;
    this.post({ t: "join", tab: sh.tab, config: this.sharedConfig() });
    for (const s of this.order) {
      if (s.state === "unsubscribed") continue;
      this.post({ t: "sub", tab: sh.tab, channel: s.channel, pos: s.position ? { ...s.position } : void 0, delta: s.delta });
    }
    for (const p of sh.pending.values()) this.post(p.msg);
  }
  sharedConfig() {
    const o = this.opts;
    return {
      token: this.token,
      hasGetToken: !!o.getToken,
      transports: o.transports,
      backoff: o.backoff,
      stablePeriod: o.stablePeriod,
      fallbackAfter: o.fallbackAfter,
      upgradeAfter: o.upgradeAfter,
      pingInterval: o.pingInterval,
      protocol: o.protocol,
      memoryOutbox: o.outbox === false || void 0,
      tabLock: this.shared?.tabLocked || void 0
    };
  }
  sharedMessage(m) {
    if (this.closedForGood || !this.shared) return;
    if (TAB_MESSAGES.has(m.t)) {
      if (this.shared.leader) this.fromTab(m);
      return;
    }
    if (!this.shared.leader) this.fromLeader(m);
  }
  becomeLeader() {
    const sh = this.shared;
    sh.leader = true;
    sh.gathering = true;
    void this.box.sync();
    for (const s of this.order) this.fromTab({ t: "sub", tab: sh.tab, channel: s.channel, pos: s.position ? { ...s.position } : void 0, delta: s.delta });
    if (sh.mode !== "hub") this.post({ t: "hello", leader: sh.tab });
    for (const p of sh.pending.values()) this.fromTab(p.msg);
    this.outboxChanged();
    setTimeout(() => {
      sh.gathering = false;
      if (!this.closedForGood) void this.connect();
    }, this.timing("gather", 150));
  }
  /** fromTab handles, in the leader, a message of a tab (maybe itself). */
  fromTab(m) {
    const sh = this.shared;
    switch (m.t) {
      case "join":
        this.post({ t: "state", state: this.state, transport: this.transportName, clientId: this.clientId });
        this.outboxChanged();
        if (sh.mode === "locks" && m.config?.tabLock) this.watchTab(m.tab);
        return;
      case "sub": {
        let refs = sh.refs.get(m.channel);
        if (!refs) sh.refs.set(m.channel, refs = /* @__PURE__ */ new Set());
        refs.add(m.tab);
        let w = this.wsubs.get(m.channel);
        if (!w) {
          w = new WireSub(m.channel, (x) => this.fanout(x), (s) => this.removeWire(s));
          if (m.pos && m.pos.offset !== null) w.position = { ...m.pos };
          w.delta = m.delta === "fossil" ? "fossil" : void 0;
          this.wsubs.set(m.channel, w);
          this.worder.push(w);
          this.transport?.subscriptionsChanged();
        } else if (w.state === "subscribed") {
          this.fanout({ t: "subscribed", channel: m.channel, pos: w.at() });
        } else if (w.state === "failed") {
          this.fanout({ t: "failed", channel: m.channel, message: "switchboard: subscribe refused" });
        } else if ((sh.gathering || !this.transport) && lower(m.pos, w.position)) {
          w.position = { ...m.pos };
        }
        return;
      }
      case "unsub":
        this.unref(m.channel, m.tab);
        return;
      case "bye":
        for (const ch of [...sh.refs.keys()]) this.unref(ch, m.tab);
        void this.box.sync();
        return;
      case "online":
        this.wentOnline();
        return;
      case "req": {
        const reply = (ok, value, err) => this.fanout({
          t: "res",
          to: m.tab,
          id: m.id,
          ok,
          value,
          error: err ? { name: err.name ?? "Error", message: err.message ?? String(err), code: err.code } : void 0
        });
        const p = m.op === "publish" ? this.box.add(m.channel, m.data, m.key, m.seq) : this.command(m.cmd, true);
        p.then(
          (v) => reply(true, v),
          (e) => reply(false, void 0, e)
        );
        return;
      }
    }
  }
  /**
   * watchTab: a leader tab learns that a follower is gone, even without a
   * bye (a crash), when the browser grants it the follower's tab lock.
   */
  watchTab(tab) {
    const sh = this.shared;
    if (!sh.locks || sh.watched.has(tab)) return;
    sh.watched.add(tab);
    sh.locks.request(tabLockName(tab), async () => {
      sh.watched.delete(tab);
      if (!this.closedForGood && this.shared === sh && sh.leader) this.fromTab({ t: "bye", tab });
    }).catch(() => {
    });
  }
  unref(channel, tab) {
    const refs = this.shared.refs.get(channel);
    if (!refs || !refs.delete(tab) || refs.size > 0) return;
    this.shared.refs.delete(channel);
    this.wsubs.get(channel)?.unsubscribe();
  }
  removeWire(s) {
    if (this.wsubs.get(s.channel) !== s) return;
    this.wsubs.delete(s.channel);
    this.worder.splice(this.worder.indexOf(s), 1);
    this.transport?.subscriptionsChanged();
  }
  /** fromLeader handles, in every tab, a message of the leader (maybe itself). */
  fromLeader(m) {
    const sh = this.shared;
    switch (m.t) {
      case "hello":
        if (m.leader === sh.tab) return;
        this.announce();
        return;
      case "pub": {
        const s = this.subs.get(m.channel);
        if (!s || !sh.joined.has(m.channel)) return;
        s.deliver({ channel: m.channel, data: m.data, offset: m.offset });
        if (s.position && m.epoch !== void 0) s.position.epoch = m.epoch;
        return;
      }
      case "gap": {
        const s = this.subs.get(m.channel);
        if (s && sh.joined.has(m.channel)) s.gap(m.reason, { offset: m.offset ?? null, epoch: m.epoch });
        return;
      }
      case "presence": {
        const s = this.subs.get(m.channel);
        if (s && sh.joined.has(m.channel)) s.presenceEvent(m.kind, m.info);
        return;
      }
      case "subscribed": {
        const s = this.subs.get(m.channel);
        if (!s) return;
        sh.joined.add(m.channel);
        s.subscribed(m.pos, void 0);
        return;
      }
      case "failed":
        this.subs.get(m.channel)?.failed(new Error(m.message));
        return;
      case "ssub": {
        if (sh.mode === "hub" || this.subs.has(m.channel)) return;
        const s = this.serverSub(m.channel);
        sh.joined.add(m.channel);
        this.toLeader({ t: "sub", tab: sh.tab, channel: m.channel });
        this.emitter.emit("subscribed", { channel: m.channel, subscription: s, data: m.data });
        return;
      }
      case "sunsub": {
        const s = this.subs.get(m.channel);
        if (!s) return;
        s.unsubscribe();
        this.emitter.emit("unsubscribed", { channel: m.channel, subscription: s, code: m.code, reason: m.reason });
        return;
      }
      case "state":
        sh.transport = m.transport;
        if (!sh.leader) {
          const same = m.state === this.state && m.clientId === this.clientId && !m.code;
          this.clientId = m.clientId;
          if (same) return;
          if (m.state === "connecting") {
            for (const s of this.order) if (s.state === "subscribed") s.state = "subscribing";
          }
          const extra = m.code ? { code: m.code, reason: m.reason } : {};
          if (m.attempt !== void 0) extra.attempt = m.attempt;
          if (m.delay !== void 0) extra.delay = m.delay;
          this.setState(m.state, extra);
        }
        return;
      case "outbox":
        if (sh.leader) return;
        sh.view = m.entries.map((e) => ({ ...e, error: e.error === void 0 ? void 0 : new Error(e.error) }));
        this.emitter.emit("outbox", this.outbox);
        return;
      case "error":
        if (!sh.leader) this.emitter.emit("error", new Error(m.message));
        return;
      case "tokreq":
        if (m.to === sh.tab) void this.giveToken(m.id);
        return;
      case "res": {
        if (m.to !== sh.tab) return;
        const p = sh.pending.get(m.id);
        if (!p) return;
        sh.pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else {
          const e = m.error;
          p.reject(
            e.name === "ServerError" && e.code !== void 0 ? new ServerError(e.code, e.message.replace(/^switchboard: \d+: /, "")) : e.name === "DisconnectedError" ? new DisconnectedError(e.message) : new Error(e.message)
          );
        }
        return;
      }
    }
  }
  /** giveToken runs getToken for the SharedWorker, which cannot call it. */
  async giveToken(id) {
    const sh = this.shared;
    try {
      if (!this.opts.getToken) throw new Error("switchboard: this tab has no getToken");
      const token = await this.opts.getToken();
      this.post({ t: "tok", tab: sh.tab, id, token });
    } catch (err) {
      this.post({ t: "tok", tab: sh.tab, id, error: err instanceof Error ? err.message : String(err) });
    }
  }
  /** request sends a publish or command to the leader and waits for its answer (resent to a new leader). */
  request(msg) {
    const sh = this.shared;
    const id = randomKey();
    const full = { t: "req", tab: sh.tab, id, ...msg };
    return new Promise((resolve, reject) => {
      sh.pending.set(id, { msg: full, resolve, reject });
      this.toLeader(full);
    });
  }
  /**
   * sharedPublish stores a publish in this tab's outbox store before
   * handing it to the holder of the connection, so that it survives this
   * tab, the holder and a reload whichever goes first. Publishes go to the
   * holder in the order they were made.
   */
  sharedPublish(channel, data) {
    const sh = this.shared;
    const key = randomKey();
    sh.handing.set(key, { id: key, channel, data, state: "queued" });
    const put = this.starting.then(() => this.box.persist(channel, data, key)).catch(() => void 0);
    const stored = sh.persisting.then(() => put);
    sh.persisting = stored;
    return stored.then((seq) => {
      sh.handing.delete(key);
      if (!this.shared) return this.box.add(channel, data, key, seq);
      return this.request({ op: "publish", channel, data, key, seq });
    });
  }
  outboxChanged() {
    this.emitter.emit("outbox", this.outbox);
    const sh = this.shared;
    if (!sh?.leader || sh.outboxTimer) return;
    sh.outboxTimer = setTimeout(() => {
      sh.outboxTimer = 0;
      if (this.closedForGood) return;
      const entries = this.box.entries.map((e) => ({ id: e.id, channel: e.channel, data: e.data, state: e.state, offset: e.offset, error: e.error?.message }));
      this.post({ t: "outbox", entries });
    }, 0);
  }
  error(err) {
    const e = err instanceof Error ? err : new Error(String(err));
    this.emitter.emit("error", e);
    if (this.shared?.leader) this.post({ t: "error", message: e.message });
  }
  sharedBye() {
    const sh = this.shared;
    if (!sh || sh.leader) return;
    this.post({ t: "bye", tab: sh.tab });
  }
  /** transportName is the transport in use or being tried. */
  get transportName() {
    if (this.shared && !this.shared.leader) return this.shared.transport;
    return this.transports[this.index];
  }
  /** outbox lists the publishes not acknowledged yet (and those failed for good). */
  get outbox() {
    const sh = this.shared;
    if (!sh) return this.box.entries;
    const base = sh.leader ? this.box.entries : sh.view;
    const mine = [];
    if (!sh.leader) {
      const listed = new Set(sh.view.map((e) => e.id));
      for (const p of sh.pending.values()) {
        const m = p.msg;
        if (m.t === "req" && m.op === "publish" && !listed.has(m.key)) mine.push({ id: m.key, channel: m.channel, data: m.data, state: "queued" });
      }
    }
    mine.push(...sh.handing.values());
    return mine.length ? [...base, ...mine] : base;
  }
  /** dropFailed removes the entries that failed for good from {@link outbox}. */
  dropFailed() {
    this.box.dropFailed();
  }
  /** on registers a listener and returns a function that removes it. */
  on(name, fn) {
    return this.emitter.on(name, fn);
  }
  /** subscribe starts receiving a channel. One subscription per channel and client. */
  subscribe(channel, handlers = {}) {
    if (this.subs.has(channel)) throw new Error(`switchboard: already subscribed to ${channel}`);
    const sub = new Subscription(channel, handlers, (s) => this.removeSub(s));
    this.subs.set(channel, sub);
    this.order.push(sub);
    if (this.shared) {
      this.toLeader({ t: "sub", tab: this.shared.tab, channel, delta: sub.delta });
      return sub;
    }
    this.transport?.subscriptionsChanged();
    return sub;
  }
  /** serverSub makes the Subscription of a server-side subscription in this client. */
  serverSub(channel) {
    const sub = new Subscription(channel, { ...this.opts.serverSubscriptions }, (s) => this.removeSub(s));
    sub.server = true;
    sub.tap = (p) => this.emitter.emit("publication", p);
    this.subs.set(channel, sub);
    this.order.push(sub);
    return sub;
  }
  /**
   * serverSubscribed handles, in the holder of the connection, a
   * subscribed push: the subscription the transport delivers to (this
   * client's own, or with sharedConnection a wire subscription for every
   * tab, which each make theirs).
   */
  serverSubscribed(channel, data) {
    if (this.wsubs.has(channel)) return void 0;
    if (!this.shared) {
      const sub = this.serverSub(channel);
      this.emitter.emit("subscribed", { channel, subscription: sub, data });
      return sub;
    }
    const w = new WireSub(channel, (x) => this.fanout(x), (s) => this.removeWire(s));
    this.wsubs.set(channel, w);
    this.worder.push(w);
    this.fanout({ t: "ssub", channel, data });
    return w;
  }
  /** serverUnsubscribed handles, in the holder of the connection, an unsubscribed push. */
  serverUnsubscribed(sub, code, reason) {
    if (this.wsubs.get(sub.channel) !== sub) return;
    if (!this.shared) {
      sub.unsubscribe();
      this.emitter.emit("unsubscribed", { channel: sub.channel, subscription: sub, code, reason });
      return;
    }
    this.shared.refs.delete(sub.channel);
    sub.unsubscribe();
    this.fanout({ t: "sunsub", channel: sub.channel, code, reason });
  }
  removeSub(s) {
    if (this.subs.get(s.channel) !== s) return;
    this.subs.delete(s.channel);
    this.order.splice(this.order.indexOf(s), 1);
    if (this.shared) {
      this.shared.joined.delete(s.channel);
      this.toLeader({ t: "unsub", tab: this.shared.tab, channel: s.channel });
      return;
    }
    this.transport?.subscriptionsChanged();
  }
  /**
   * publish sends data to a channel and resolves with its offset once the
   * server acknowledged it. Offline, it waits in the outbox (IndexedDB),
   * with its idempotency key, until a connection takes it.
   */
  publish(channel, data, opts = {}) {
    if (data === void 0) return Promise.reject(new TypeError("switchboard: publish needs data (null is fine)"));
    if (this.closedForGood) return Promise.reject(new DisconnectedError("switchboard: client closed"));
    if (opts.ephemeral) return this.publishNow(channel, data);
    if (this.shared) return this.sharedPublish(channel, data);
    return this.box.add(channel, data);
  }
  /** publishNow sends an ephemeral publish on the connection as it is, without the outbox. */
  publishNow(channel, data) {
    if (this.state !== "connected") return Promise.reject(new DisconnectedError("switchboard: not connected (ephemeral publish)"));
    const key = randomKey();
    if (this.shared && !this.shared.leader) {
      return this.request({ op: "command", cmd: { command: "publish", channel, data, idempotency_key: key } });
    }
    const t = this.transport;
    if (!t) return Promise.reject(new DisconnectedError("switchboard: not connected (ephemeral publish)"));
    return t.publish(channel, data, key);
  }
  /** presence lists the clients subscribed to a channel (over SSE and long polling: GET /presence). */
  presence(channel) {
    return this.command({ command: "presence", channel });
  }
  /** presenceStats counts the clients and users of a channel (over SSE and long polling: GET /presence_stats). */
  presenceStats(channel) {
    return this.command({ command: "presence_stats", channel });
  }
  /** history reads a channel's history (over SSE and long polling: GET /history). */
  history(channel, opts = {}) {
    return this.command({ command: "history", channel, ...opts });
  }
  /**
   * rpc calls a method of the application's backend through the server (the
   * rpc command, docs/backend.md) and resolves with the data it answered.
   * The backend's refusals reject with its code; 503 means it was down or
   * slow (retry). WebSocket only.
   */
  async rpc(method, data) {
    const cmd = { command: "rpc", method };
    if (data !== void 0) cmd.data = data;
    const res = await this.command(cmd);
    return res?.data;
  }
  async command(cmd, local = false) {
    if (this.closedForGood) throw new DisconnectedError("switchboard: client closed");
    if (this.shared && !local) {
      await this.starting;
      if (this.shared) return this.request({ op: "command", cmd });
    }
    if (this.stopped && !this.transport) throw this.stopped;
    if (this.state !== "connected") await new Promise((r) => this.waiters.push(r));
    if (this.closedForGood) throw new DisconnectedError("switchboard: client closed");
    if (this.stopped && !this.transport) throw this.stopped;
    const t = this.transport;
    if (!t?.request) throw new Error(`switchboard: ${cmd.command} needs the websocket transport (on ${this.transportName})`);
    return t.request(cmd);
  }
  /**
   * joinRoom enters a call room and resolves with the Room once joined;
   * see docs/sdk.md. A participant is a connection: it needs the tab's
   * own WebSocket (sharedConnection: false). A lost connection ends the
   * room (event "closed").
   */
  async joinRoom(name, opts = {}) {
    if (this.shared) throw new Error("switchboard: joinRoom needs the tab's own connection: create the client with sharedConnection: false");
    if (this.rooms.has(name)) throw new Error(`switchboard: already in room ${name}`);
    const room = new Room(name, opts, {
      command: (cmd) => this.command(cmd),
      forget: () => {
        if (this.rooms.get(name) === room) this.rooms.delete(name);
      }
    });
    this.rooms.set(name, room);
    try {
      return await room.join();
    } catch (err) {
      if (this.rooms.get(name) === room) this.rooms.delete(name);
      void room.leave();
      throw err;
    }
  }
  /** close ends the connection for good. Queued publishes stay stored for the next page. */
  close() {
    if (this.closedForGood) return;
    this.closedForGood = true;
    for (const k of Object.keys(this.timers)) clearTimeout(this.timers[k]);
    const g = globalThis;
    g.removeEventListener?.("online", this.onlineHandler);
    g.removeEventListener?.("offline", this.offlineHandler);
    this.transport?.close();
    this.transport = null;
    this.box.close(new DisconnectedError("switchboard: client closed"));
    this.setState("disconnected", { code: 1e3, reason: "closed by client" });
    for (const f of this.waiters.splice(0)) f();
    const sh = this.shared;
    if (sh) {
      if (!sh.leader) this.post({ t: "bye", tab: sh.tab });
      g.removeEventListener?.("pagehide", sh.pageHide);
      g.removeEventListener?.("pageshow", sh.pageShow);
      for (const p of sh.pending.values()) p.reject(new DisconnectedError("switchboard: client closed"));
      sh.pending.clear();
      clearInterval(sh.ping);
      clearTimeout(sh.outboxTimer);
      sh.release();
      sh.tabLock();
      sh.bus.close();
    }
  }
  setState(state, extra = {}) {
    if (this.shared?.leader && !this.closedForGood) {
      this.post({ t: "state", state, transport: this.transportName, clientId: this.clientId, ...extra });
      if (state === "connecting") {
        for (const s of this.order) if (s.state === "subscribed") s.state = "subscribing";
      }
    }
    this.state = state;
    if (state !== "connected") for (const r of [...this.rooms.values()]) r.disconnected();
    this.emitter.emit("state", { state, transport: this.transportName, ...extra });
    if (state === "connected") {
      const w = this.waiters.splice(0);
      for (const f of w) f();
    }
  }
  offline() {
    const nav = globalThis.navigator;
    return nav?.onLine === false;
  }
  async connect() {
    if (this.closedForGood || this.transport || !this.leading) return;
    if (this.offline()) {
      if (this.state !== "disconnected") this.setState("disconnected", { code: 0, reason: "offline", attempt: this.attempts + 1 });
      return;
    }
    this.attempts++;
    this.setState("connecting", { attempt: this.attempts, delay: 0 });
    if (this.opts.getToken && (!this.token || this.tokenStale)) {
      try {
        this.token = await this.opts.getToken();
        this.tokenStale = false;
      } catch (err) {
        this.error(err);
        this.scheduleReconnect();
        return;
      }
      if (this.closedForGood || this.transport) return;
    }
    for (const s of this.worder) if (s.state === "subscribed") s.state = "subscribing";
    const name = this.transportName;
    let t;
    const ctx = {
      wsURL: this.urls.ws,
      httpURL: this.urls.http,
      env: this.opts.env ?? {},
      pingInterval: this.opts.pingInterval ?? 25e3,
      protocol: this.opts.protocol ?? "json",
      token: () => this.token,
      subscriptions: () => this.worder.filter((s) => s.state !== "failed"),
      opened: (info) => this.opened(t, info),
      identified: (client) => {
        if (t === this.transport) this.clientId = client;
      },
      publication: (p) => this.wsubs.get(p.channel)?.deliver(p),
      serverSubscribed: (channel, data) => t === this.transport ? this.serverSubscribed(channel, data) : void 0,
      serverUnsubscribed: (sub, code, reason) => {
        if (t === this.transport) this.serverUnsubscribed(sub, code, reason);
      },
      room: (m) => this.rooms.get(m.room)?.push(m.event, m.data),
      closed: (info) => this.transportClosed(t, info)
    };
    if (name === "websocket") t = new WebSocketTransport(ctx);
    else if (name === "sse") t = new SSETransport(ctx);
    else t = new PollTransport(ctx);
    this.transport = t;
    t.open();
  }
  opened(t, info) {
    if (t !== this.transport) return;
    this.failures = 0;
    this.attempts = 0;
    this.clientId = info.client;
    this.setState("connected");
    clearTimeout(this.timers.stable);
    this.timers.stable = setTimeout(() => this.backoff.reset(), this.opts.stablePeriod ?? 5e3);
    this.scheduleRefresh(info.expires || tokenExpiry(this.token));
    this.box.setSender((e) => t.publish(e.channel, e.data, e.id));
    if (this.index > 0) {
      clearTimeout(this.timers.upgrade);
      this.timers.upgrade = setTimeout(() => this.upgrade(), this.opts.upgradeAfter ?? 3e4);
    }
  }
  upgrade() {
    if (this.closedForGood || this.index === 0) return;
    const again = () => {
      clearTimeout(this.timers.upgrade);
      if (!this.closedForGood && this.index !== 0) this.timers.upgrade = setTimeout(() => this.upgrade(), this.opts.upgradeAfter ?? 3e4);
    };
    if (this.transports[0] === "websocket") {
      const WS = this.opts.env?.WebSocket ?? globalThis.WebSocket;
      let probe;
      try {
        probe = new WS(this.urls.ws);
      } catch {
        again();
        return;
      }
      probe.onopen = () => {
        probe.onclose = null;
        probe.close(1e3);
        this.switchToFirst();
      };
      probe.onclose = () => again();
      probe.onerror = () => {
      };
      return;
    }
    this.switchToFirst();
  }
  switchToFirst() {
    if (this.closedForGood || this.index === 0) return;
    this.transport?.close();
    this.transport = null;
    this.box.setSender(null);
    this.index = 0;
    this.failures = 0;
    void this.connect();
  }
  scheduleRefresh(exp) {
    clearTimeout(this.timers.refresh);
    if (!exp || !this.opts.getToken) return;
    const remaining = exp * 1e3 - Date.now();
    const lead = Math.min(3e4, Math.max(remaining / 4, 0));
    this.timers.refresh = setTimeout(() => void this.refresh(), Math.max(0, remaining - lead));
  }
  async refresh() {
    const t = this.transport;
    if (!t || !this.opts.getToken) return;
    let token;
    try {
      token = await this.opts.getToken();
    } catch (err) {
      this.error(err);
      this.timers.refresh = setTimeout(() => void this.refresh(), 1e3);
      return;
    }
    this.token = token;
    if (t !== this.transport) return;
    try {
      await t.refresh(token);
      this.scheduleRefresh(tokenExpiry(token));
    } catch (err) {
      if (t !== this.transport) return;
      this.error(err);
      this.tokenStale = false;
      t.close();
      this.transportClosed(t, { code: 0, reason: "refresh failed", opened: true });
    }
  }
  transportClosed(t, info) {
    if (t !== this.transport) return;
    this.transport = null;
    clearTimeout(this.timers.stable);
    clearTimeout(this.timers.refresh);
    clearTimeout(this.timers.upgrade);
    this.box.setSender(null);
    const closed = { code: info.code, reason: info.reason };
    if (this.closedForGood) {
      this.setState("disconnected", closed);
      return;
    }
    if (info.tokenExpired) {
      this.tokenStale = true;
      if (!this.opts.getToken) {
        this.setState("disconnected", closed);
        this.stop(new Error("switchboard: token expired and no getToken to renew it"));
        return;
      }
    } else if (info.fatal) {
      this.setState("disconnected", closed);
      this.stop(new Error(`switchboard: closed by server: ${info.code} ${info.reason}`));
      return;
    }
    if (!info.opened) {
      this.failures++;
      if (this.failures >= (this.opts.fallbackAfter ?? 2) && this.transports.length > 1) {
        this.index = (this.index + 1) % this.transports.length;
        this.failures = 0;
      }
    }
    if (this.offline()) {
      this.setState("disconnected", { ...closed, attempt: this.attempts + 1 });
      return;
    }
    const delay = this.scheduleReconnect();
    this.setState("disconnected", { ...closed, attempt: this.attempts + 1, delay });
  }
  /** stop gives up reconnecting: commands waiting for a connection fail. */
  stop(err) {
    this.stopped = err;
    this.error(err);
    for (const f of this.waiters.splice(0)) f();
  }
  /** scheduleReconnect sets the reconnect timer to the next backoff delay and returns it. */
  scheduleReconnect() {
    clearTimeout(this.timers.reconnect);
    const delay = this.backoff.next();
    this.timers.reconnect = setTimeout(() => void this.connect(), delay);
    return delay;
  }
  wentOffline() {
    const t = this.transport;
    if (!t) return;
    t.close();
    this.transportClosed(t, { code: 0, reason: "offline", opened: true });
  }
  wentOnline() {
    const sh = this.shared;
    if (sh && !sh.leader && sh.mode === "worker") this.post({ t: "online", tab: sh.tab });
    if (this.closedForGood || this.transport || !this.leading) return;
    clearTimeout(this.timers.reconnect);
    this.backoff.reset();
    void this.connect();
  }
};
function sharedScope(http, who) {
  return `${http}#${who}`;
}
function tabLockName(tab) {
  return `switchboard-tab:${tab}`;
}

// src/hub.ts
var Hub = class {
  /** url is the server the worker connects to (its name says which). */
  constructor(url, opts = {}) {
    /** client is the connection, made when the first tab joins. */
    this.client = null;
    /** tabs by id. */
    this.tabs = /* @__PURE__ */ new Map();
    this.tokenAsks = /* @__PURE__ */ new Map();
    this.sweeper = 0;
    this.nextAsk = 0;
    this.url = url;
    this.opts = opts;
    const silence = opts.silence ?? 6e4;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const t of [...this.tabs.values()]) if (!t.watched && now - t.seen > silence) this.drop(t);
    }, Math.max(10, silence / 4));
    this.sweeper?.unref?.();
  }
  /** connect takes a new tab's port. */
  connect(port) {
    port.onmessage = (ev) => this.message(port, ev.data);
    port.start?.();
  }
  /** close ends the connection (tests). */
  close() {
    clearInterval(this.sweeper);
    this.client?.close();
  }
  message(port, m) {
    if (!m || typeof m !== "object" || !("tab" in m)) return;
    let tab = this.tabs.get(m.tab);
    if (tab && tab.port !== port) tab = void 0;
    if (!tab) {
      if (m.t === "bye") return;
      if (m.t !== "join") {
        port.postMessage({ t: "hello", leader: "hub" });
        return;
      }
      tab = this.admit(port, m.tab, m.config);
    }
    tab.seen = Date.now();
    switch (m.t) {
      case "ping":
        port.postMessage({ t: "pong" });
        return;
      case "tok": {
        const ask = this.tokenAsks.get(m.id);
        if (!ask) return;
        this.tokenAsks.delete(m.id);
        if (m.token !== void 0) ask.resolve(m.token);
        else ask.reject(new Error(m.error ?? "switchboard: no token"));
        return;
      }
      case "bye":
        this.drop(tab);
        return;
      case "join":
        if (m.config?.hasGetToken) tab.hasGetToken = true;
        if (!this.client && m.config) this.start(m.config);
        break;
    }
    this.client?.hubMessage(m);
  }
  admit(port, id, config) {
    const old = this.tabs.get(id);
    if (old) this.drop(old);
    const tab = { id, port, hasGetToken: !!config?.hasGetToken, seen: Date.now(), watched: false };
    this.tabs.set(id, tab);
    const locks = this.opts.locks;
    if (locks && config?.tabLock) {
      tab.watched = true;
      locks.request(tabLockName(id), async () => {
        if (this.tabs.get(id) === tab) this.drop(tab);
      }).catch(() => {
      });
    }
    return tab;
  }
  /** drop forgets a tab: its subscriptions are released, its token asks go to another tab. */
  drop(tab) {
    if (this.tabs.get(tab.id) !== tab) return;
    this.tabs.delete(tab.id);
    for (const [id, ask] of [...this.tokenAsks]) {
      if (ask.tab !== tab.id) continue;
      this.tokenAsks.delete(id);
      this.askToken().then(ask.resolve, ask.reject);
    }
    this.client?.hubMessage({ t: "bye", tab: tab.id });
  }
  start(config) {
    const bus = {
      post: (m) => this.route(m),
      close() {
      }
    };
    this.client = new Switchboard(this.url, {
      token: config.token,
      getToken: config.hasGetToken ? () => this.askToken() : void 0,
      transports: config.transports,
      backoff: config.backoff,
      stablePeriod: config.stablePeriod,
      fallbackAfter: config.fallbackAfter,
      upgradeAfter: config.upgradeAfter,
      pingInterval: config.pingInterval,
      protocol: config.protocol,
      outbox: config.memoryOutbox ? false : this.opts.outbox,
      env: this.opts.env,
      sharedTimings: this.opts.sharedTimings,
      hub: bus
    });
  }
  /** route sends a message of the connection to the tabs it concerns. */
  route(m) {
    const send = (t) => {
      try {
        t?.port.postMessage(m);
      } catch {
      }
    };
    switch (m.t) {
      case "res":
      case "tokreq":
        send(this.tabs.get(m.to));
        return;
      case "ssub":
        for (const t of this.tabs.values()) this.client?.hubMessage({ t: "sub", tab: t.id, channel: m.channel });
        for (const t of this.tabs.values()) send(t);
        return;
      case "pub":
      case "gap":
      case "presence":
      case "subscribed":
      case "failed": {
        const refs = this.client?.hubRefs(m.channel);
        for (const id of refs ?? []) send(this.tabs.get(id));
        return;
      }
      default:
        for (const t of this.tabs.values()) send(t);
    }
  }
  /**
   * askToken has a tab run its getToken (functions cannot cross a port):
   * the tab heard from last among those that have one. If that tab goes
   * before answering, the next one is asked.
   */
  askToken() {
    let best;
    for (const t of this.tabs.values()) if (t.hasGetToken && (!best || t.seen > best.seen)) best = t;
    if (!best) return Promise.reject(new Error("switchboard: no tab can give a token"));
    const id = String(++this.nextAsk);
    const tab = best;
    return new Promise((resolve, reject) => {
      this.tokenAsks.set(id, { tab: tab.id, resolve, reject });
      try {
        tab.port.postMessage({ t: "tokreq", to: tab.id, id });
      } catch {
        this.drop(tab);
      }
    });
  }
};

// src/sharedworker.ts
function serverOf(name) {
  const m = /^switchboard:(.+):[^:]+$/.exec(name);
  return m ? m[1] : void 0;
}
function startSharedWorker(g) {
  if (typeof g.SharedWorkerGlobalScope !== "function" || !(g instanceof g.SharedWorkerGlobalScope)) return;
  const url = serverOf(String(g.name ?? ""));
  if (!url) return;
  const hub = new Hub(url, { locks: g.navigator?.locks });
  g.addEventListener("connect", (ev) => hub.connect(ev.ports[0]));
}
export {
  Backoff,
  DisconnectedError,
  Hub,
  IndexedDBOutboxStore,
  MemoryOutboxStore,
  Outbox,
  Room,
  ServerError,
  Subscription,
  Switchboard,
  applyDelta,
  randomKey,
  serverOf,
  startSharedWorker,
  tokenExpiry
};
