// The durable outbox: every publish is an entry with an idempotency key,
// kept (in IndexedDB when there is one) until the server acknowledged it,
// sent in order per channel, and sent again with the same key after a
// reconnect or a page reload, so that the server can drop repeats.

/** OutboxState is the state of one outbox entry. */
export type OutboxState = "queued" | "sent" | "acked" | "failed";

/** OutboxEntry is one publish waiting for (or having got) its answer. */
export interface OutboxEntry {
  /** id is the idempotency key sent with the publish. */
  id: string;
  channel: string;
  data: unknown;
  state: OutboxState;
  /** offset the publication got, once acked. */
  offset?: number;
  /** error that failed the entry for good. */
  error?: Error;
}

/** StoredEntry is what an OutboxStore keeps of an entry. */
export interface StoredEntry {
  id: string;
  /** seq orders entries (per client scope). */
  seq: number;
  /** scope separates the outboxes of different servers in one store. */
  scope: string;
  channel: string;
  data: unknown;
}

/** OutboxStore persists queued entries. */
export interface OutboxStore {
  load(scope: string): Promise<StoredEntry[]>;
  put(e: StoredEntry): Promise<void>;
  delete(id: string): Promise<void>;
}

/** MemoryOutboxStore keeps entries in memory: for Node, tests, and browsers without IndexedDB. */
export class MemoryOutboxStore implements OutboxStore {
  readonly entries = new Map<string, StoredEntry>();
  async load(scope: string): Promise<StoredEntry[]> {
    return [...this.entries.values()].filter((e) => e.scope === scope).sort((a, b) => a.seq - b.seq);
  }
  async put(e: StoredEntry): Promise<void> {
    this.entries.set(e.id, structuredClone(e));
  }
  async delete(id: string): Promise<void> {
    this.entries.delete(id);
  }
}

const DB_NAME = "switchboard-outbox";
const STORE = "entries";

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** IndexedDBOutboxStore keeps entries in the browser's IndexedDB, so they survive a reload. */
export class IndexedDBOutboxStore implements OutboxStore {
  private db: Promise<IDBDatabase>;
  constructor(idb: IDBFactory, name = DB_NAME) {
    this.db = new Promise((resolve, reject) => {
      const open = idb.open(name, 1);
      open.onupgradeneeded = () => {
        open.result.createObjectStore(STORE, { keyPath: "id" });
      };
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
      open.onblocked = () => reject(new Error("switchboard: outbox database blocked"));
    });
    this.db.catch(() => {});
  }
  private async tx(mode: IDBTransactionMode): Promise<IDBObjectStore> {
    return (await this.db).transaction(STORE, mode).objectStore(STORE);
  }
  async load(scope: string): Promise<StoredEntry[]> {
    const all = (await req((await this.tx("readonly")).getAll())) as StoredEntry[];
    return all.filter((e) => e.scope === scope).sort((a, b) => a.seq - b.seq);
  }
  async put(e: StoredEntry): Promise<void> {
    const store = await this.tx("readwrite");
    // Durable only once the transaction has committed.
    const done = new Promise<void>((resolve, reject) => {
      store.transaction.oncomplete = () => resolve();
      store.transaction.onerror = () => reject(store.transaction.error);
      store.transaction.onabort = () => reject(store.transaction.error);
    });
    store.put(e);
    await done;
  }
  async delete(id: string): Promise<void> {
    await req((await this.tx("readwrite")).delete(id));
  }
}

/** defaultStore picks IndexedDB when the environment has it, memory otherwise. */
export function defaultStore(): OutboxStore {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (idb) {
    try {
      return new IndexedDBOutboxStore(idb);
    } catch {
      // Some private modes throw on use: fall back to memory.
    }
  }
  return new MemoryOutboxStore();
}

/** Sender sends one entry and resolves with its offset. */
export type Sender = (e: OutboxEntry) => Promise<{ offset: number }>;

/** randomKey makes an idempotency key (128 random bits, hex). */
export function randomKey(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  const b = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

interface Waiter {
  resolve: (r: { offset: number }) => void;
  reject: (err: Error) => void;
}

// How many acknowledged keys an outbox remembers, to answer a publish
// handed to it again (a tab resending to a new holder) without sending it.
const REMEMBER = 10_000;

/**
 * Outbox orders, persists and sends publishes. Entries of one channel go
 * one at a time, in order: the next is sent once the previous is acked,
 * so a refused-and-retried publish never lands after a later one.
 * `isRetryable` decides whether a failure keeps the entry queued (to be
 * sent again after the next `flush`) or fails it for good.
 *
 * Entries are ordered by their seq, a hybrid clock (wall time in µs, or
 * one more than the last seq seen): the entries several tabs write to one
 * store interleave roughly by time, and each tab's own stay in its order.
 */
export class Outbox {
  /** entries not acked yet (failed ones stay, without being persisted, until dropFailed). */
  readonly entries: OutboxEntry[] = [];
  /** loaded resolves once the entries kept in the store are in (after the last {@link sync}). */
  loaded: Promise<void>;
  /** store is where entries are kept. */
  readonly store: OutboxStore;
  private readonly scope: string;
  private seq = 0;
  private readonly seqOf = new Map<string, number>();
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly busy = new Set<string>(); // channels with a send in flight
  private sender: Sender | null = null;
  private readonly persisted = new Map<string, Promise<void>>();
  private readonly acked = new Map<string, number>(); // recently acked key -> offset
  private readonly isRetryable: (err: unknown) => boolean;
  /** retryDelay is the pause before resending after a retryable refusal, in ms. */
  retryDelay = 1000;
  /** onChange runs after every change of an entry's state. */
  onChange: (() => void) | null = null;

  /**
   * load: read the entries kept in the store now (a page's own outbox).
   * Without it the outbox starts empty until {@link sync} (a tab that
   * does not hold a shared connection sends nothing itself).
   */
  constructor(store: OutboxStore, scope: string, isRetryable: (err: unknown) => boolean, load = true) {
    this.store = store;
    this.scope = scope;
    this.isRetryable = isRetryable;
    this.loaded = load ? this.sync() : Promise.resolve();
  }

  /** nextSeq is the seq of a new entry. */
  nextSeq(): number {
    const perf = (globalThis as { performance?: { timeOrigin?: number; now(): number } }).performance;
    const now = perf?.timeOrigin ? perf.timeOrigin + perf.now() : Date.now();
    this.seq = Math.max(Math.floor(now * 1000), this.seq + 1);
    return this.seq;
  }

  /**
   * persist writes an entry to the store without queueing it here: a tab
   * of a shared connection makes its publish durable before handing it to
   * the context that sends. Resolves with the entry's seq.
   */
  async persist(channel: string, data: unknown, id: string): Promise<number> {
    const seq = this.nextSeq();
    await this.store.put({ id, seq, scope: this.scope, channel, data });
    return seq;
  }

  /**
   * sync adds the entries of the store that are not here yet (written by
   * another tab, or by a holder of the shared connection that went away),
   * in seq order, and sends them. Entries acked here are not taken again.
   */
  sync(): Promise<void> {
    const run = (async () => {
      await Promise.all(this.persisted.values());
      let kept: StoredEntry[];
      try {
        kept = await this.store.load(this.scope);
      } catch {
        return;
      }
      const have = new Set(this.entries.map((e) => e.id));
      const fresh: OutboxEntry[] = [];
      for (const k of kept) {
        this.seq = Math.max(this.seq, k.seq);
        if (have.has(k.id) || this.acked.has(k.id)) continue;
        fresh.push({ id: k.id, channel: k.channel, data: k.data, state: "queued" });
        this.seqOf.set(k.id, k.seq);
      }
      if (!fresh.length) return;
      // Stable; of equal seqs, the stored ones first (made before this
      // context saw them).
      this.entries.unshift(...fresh);
      const order = this.entries.map((e, i) => [this.seqOf.get(e.id) ?? 0, i, e] as const);
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
  add(channel: string, data: unknown, id = randomKey(), seq?: number): Promise<{ offset: number }> {
    const done = this.acked.get(id);
    if (done !== undefined) return Promise.resolve({ offset: done });
    const result = new Promise<{ offset: number }>((resolve, reject) => {
      const ws = this.waiters.get(id) ?? [];
      ws.push({ resolve, reject });
      this.waiters.set(id, ws);
    });
    const known = this.entries.find((e) => e.id === id);
    if (known) {
      if (known.state === "failed") this.settle(id, known.error ?? new Error("switchboard: publish failed"));
      return result;
    }
    const entry: OutboxEntry = { id, channel, data, state: "queued" };
    if (seq === undefined) seq = this.nextSeq();
    else this.seq = Math.max(this.seq, seq);
    this.seqOf.set(id, seq);
    this.entries.push(entry);
    const stored: StoredEntry = { id, seq, scope: this.scope, channel, data };
    const p = this.store.put(stored).catch(() => {});
    this.persisted.set(id, p);
    this.changed();
    void this.flush();
    return result;
  }

  private settle(id: string, err: Error | null, offset = 0): void {
    const ws = this.waiters.get(id);
    this.waiters.delete(id);
    for (const w of ws ?? []) err ? w.reject(err) : w.resolve({ offset });
  }

  /** online sets the sender (null while disconnected) and sends what is queued. */
  setSender(s: Sender | null): void {
    this.sender = s;
    if (!s) {
      // Unanswered sends are sent again, with their key, on the next connection.
      for (const e of this.entries) if (e.state === "sent") e.state = "queued";
      this.changed();
      return;
    }
    void this.flush();
  }

  /** flush starts sending the first queued entry of every idle channel. */
  async flush(): Promise<void> {
    await this.loaded;
    if (!this.sender) return;
    const channels = new Set<string>();
    for (const e of this.entries) if (e.state === "queued" || e.state === "sent") channels.add(e.channel);
    for (const ch of channels) if (!this.busy.has(ch)) void this.drain(ch);
  }

  private async drain(channel: string): Promise<void> {
    this.busy.add(channel);
    let retryLater = false;
    try {
      for (;;) {
        const sender = this.sender;
        if (!sender) return;
        const e = this.entries.find((x) => x.channel === channel && (x.state === "queued" || x.state === "sent"));
        if (!e) return;
        await this.persisted.get(e.id);
        e.state = "sent";
        this.changed();
        let res: { offset: number };
        try {
          res = await sender(e);
        } catch (err) {
          if (this.isRetryable(err)) {
            // Keep it (and the channel's order): sent again on the next flush.
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
        // A retryable refusal while still connected (503, 429) is tried
        // again after a pause; a send cut by a reconnect goes at once on
        // the new connection.
        if (retryLater) setTimeout(() => void this.flush(), this.retryDelay);
        else void this.drain(channel);
      }
    }
  }

  private ack(e: OutboxEntry, offset: number): void {
    e.state = "acked";
    e.offset = offset;
    this.acked.set(e.id, offset);
    if (this.acked.size > REMEMBER) this.acked.delete(this.acked.keys().next().value as string);
    this.remove(e);
    this.settle(e.id, null, offset);
  }

  private fail(e: OutboxEntry, err: Error): void {
    e.state = "failed";
    e.error = err;
    void this.store.delete(e.id).catch(() => {});
    this.persisted.delete(e.id);
    this.changed();
    this.settle(e.id, err);
  }

  private remove(e: OutboxEntry): void {
    const i = this.entries.indexOf(e);
    if (i >= 0) this.entries.splice(i, 1);
    const p = this.persisted.get(e.id) ?? Promise.resolve();
    this.persisted.delete(e.id);
    this.seqOf.delete(e.id);
    void p.then(() => this.store.delete(e.id)).catch(() => {});
    this.changed();
  }

  /** dropFailed forgets the entries that failed for good. */
  dropFailed(): void {
    for (let i = this.entries.length - 1; i >= 0; i--) if (this.entries[i].state === "failed") this.entries.splice(i, 1);
    this.changed();
  }

  /** close rejects every waiting publish (the entries stay stored for the next page). */
  close(err: Error): void {
    this.sender = null;
    for (const [, ws] of this.waiters) for (const w of ws) w.reject(err);
    this.waiters.clear();
  }

  private changed(): void {
    this.onChange?.();
  }
}
