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

/**
 * Outbox orders, persists and sends publishes. Entries of one channel go
 * one at a time, in order: the next is sent once the previous is acked,
 * so a refused-and-retried publish never lands after a later one.
 * `isRetryable` decides whether a failure keeps the entry queued (to be
 * sent again after the next `flush`) or fails it for good.
 */
export class Outbox {
  /** entries not acked yet (failed ones stay, without being persisted, until dropFailed). */
  readonly entries: OutboxEntry[] = [];
  /** loaded resolves once the entries kept from before (a reload) are in. */
  readonly loaded: Promise<void>;
  private readonly store: OutboxStore;
  private readonly scope: string;
  private seq = Date.now() * 1000;
  private readonly waiters = new Map<string, Waiter>();
  private readonly busy = new Set<string>(); // channels with a send in flight
  private sender: Sender | null = null;
  private readonly persisted = new Map<string, Promise<void>>();
  private readonly isRetryable: (err: unknown) => boolean;
  /** retryDelay is the pause before resending after a retryable refusal, in ms. */
  retryDelay = 1000;
  /** onChange runs after every change of an entry's state. */
  onChange: (() => void) | null = null;

  constructor(store: OutboxStore, scope: string, isRetryable: (err: unknown) => boolean) {
    this.store = store;
    this.scope = scope;
    this.isRetryable = isRetryable;
    this.loaded = store
      .load(scope)
      .then((kept) => {
        // Kept entries go before any made since this page started.
        const fresh = this.entries.splice(0);
        for (const k of kept) {
          this.entries.push({ id: k.id, channel: k.channel, data: k.data, state: "queued" });
          this.seq = Math.max(this.seq, k.seq + 1);
        }
        this.entries.push(...fresh);
      })
      .catch(() => {});
  }

  /** add queues a publish and returns its promise (resolved on ack). */
  add(channel: string, data: unknown, id = randomKey()): Promise<{ offset: number }> {
    const entry: OutboxEntry = { id, channel, data, state: "queued" };
    this.entries.push(entry);
    const stored: StoredEntry = { id, seq: this.seq++, scope: this.scope, channel, data };
    const p = this.store.put(stored).catch(() => {});
    this.persisted.set(id, p);
    const result = new Promise<{ offset: number }>((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
    });
    this.changed();
    void this.flush();
    return result;
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
    this.remove(e);
    this.waiters.get(e.id)?.resolve({ offset });
    this.waiters.delete(e.id);
  }

  private fail(e: OutboxEntry, err: Error): void {
    e.state = "failed";
    e.error = err;
    void this.store.delete(e.id).catch(() => {});
    this.persisted.delete(e.id);
    this.changed();
    this.waiters.get(e.id)?.reject(err);
    this.waiters.delete(e.id);
  }

  private remove(e: OutboxEntry): void {
    const i = this.entries.indexOf(e);
    if (i >= 0) this.entries.splice(i, 1);
    const p = this.persisted.get(e.id) ?? Promise.resolve();
    this.persisted.delete(e.id);
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
    for (const [, w] of this.waiters) w.reject(err);
    this.waiters.clear();
  }

  private changed(): void {
    this.onChange?.();
  }
}
