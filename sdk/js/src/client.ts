// The client: one connection state machine over a list of transports,
// the subscriptions, the outbox and the token.

import { Backoff } from "./backoff.js";
import type { BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { Outbox, defaultStore, MemoryOutboxStore, randomKey } from "./outbox.js";
import type { OutboxEntry, OutboxStore } from "./outbox.js";
import { PollTransport } from "./poll.js";
import { SSETransport } from "./sse.js";
import { TAB_MESSAGES, WireSub, identityKey, lower, sharedSupport } from "./shared.js";
import type { Bus, Locks, Message, SharedConfig, SharedSupport, WireEntry } from "./shared.js";
import { Subscription } from "./subscription.js";
import type { SubscriptionHandlers } from "./subscription.js";
import type { Env, Transport, TransportContext } from "./transport.js";
import { DisconnectedError, ServerError } from "./types.js";
import type { ClientInfo, CloseInfo, ConnectionState, Publication, TransportName } from "./types.js";
import { WebSocketTransport } from "./ws.js";
import { Room, type RoomOptions } from "./room.js";

/** SwitchboardOptions configures a client. Every field is optional. */
export interface SwitchboardOptions {
  /** token is a connection token (JWT) minted by the application's backend. */
  token?: string;
  /**
   * getToken returns a fresh token. It is called before the first
   * connection when `token` is not set, before the token expires (the
   * new one is sent with `refresh` over WebSocket; SSE and long polling
   * reconnect with it) and after the server closed with 4005.
   */
  getToken?: () => Promise<string>;
  /** transports in order of preference; the client falls back along it. Default all three. */
  transports?: TransportName[];
  /**
   * sharedConnection (default true): the clients of one server and one
   * identity in the tabs of one origin share one connection, held by a
   * SharedWorker, or where there is none (or it cannot load) by a leader
   * tab chosen with Web Locks that the others reach over a
   * BroadcastChannel; an own connection where neither works. Tabs with
   * tokens of different users never share. See docs/sdk.md.
   */
  sharedConnection?: boolean;
  /**
   * workerUrl is the script of the SharedWorker (it must be on the page's
   * origin). Default: switchboard-worker.js beside this module (the server
   * serves it at /sdk/switchboard-worker.js). `false`: no SharedWorker,
   * the Web Locks leader instead.
   */
  workerUrl?: string | URL | false;
  /** backoff tunes reconnect delays (defaults: base 500 ms, max 10 s, factor 2, full jitter). */
  backoff?: BackoffOptions;
  /** stablePeriod: a connection up this long resets the backoff, in ms. Default 5000. */
  stablePeriod?: number;
  /** fallbackAfter: failures to open a transport before trying the next one. Default 2. */
  fallbackAfter?: number;
  /** upgradeAfter: on a fallback transport, try the first one again after this long, in ms. Default 30000. */
  upgradeAfter?: number;
  /**
   * outbox: where unacknowledged publishes are kept. Default: IndexedDB
   * when the environment has it (they survive a reload), memory otherwise.
   * `false` keeps them in memory.
   */
  outbox?: OutboxStore | false;
  /**
   * pingInterval: over WebSocket, a ping command this often (ms); no answer
   * within as long again closes the connection and reconnects. Default
   * 25000; 0 disables.
   */
  pingInterval?: number;
  /**
   * protocol spoken over WebSocket: "json" (the default) or "protobuf",
   * the binary protocol (subprotocol switchboard.v1.protobuf): smaller
   * frames, and publication data may be bytes. With "protobuf", a
   * Uint8Array (or ArrayBuffer, or other view) published is delivered to
   * subscribers of the binary protocol as a Uint8Array, and to JSON
   * clients as {"$binary":"<base64>"}. SSE and long polling are JSON.
   */
  protocol?: "json" | "protobuf";
  /**
   * serverSubscriptions are the callbacks given to the subscriptions the
   * server makes (POST /api/subscribe, see the "subscribed" event).
   */
  serverSubscriptions?: SubscriptionHandlers;
  /** env replaces WebSocket, EventSource or fetch (tests, polyfills). */
  env?: Env;
  /** @internal hub runs this client as the connection of a SharedWorker (see hub.ts). */
  hub?: Bus;
  /** @internal timings of sharing, in ms (tests). */
  sharedTimings?: { gather?: number; ping?: number };
}

/** defaultWorkerUrl is the worker bundle beside this module. */
function defaultWorkerUrl(): string | undefined {
  try {
    return new URL("./switchboard-worker.js", import.meta.url).href;
  } catch {
    return undefined;
  }
}

const nullBus: Bus = { post() {}, close() {} };

/** StateEvent is the payload of the "state" event. */
export interface StateEvent {
  state: ConnectionState;
  /** transport in use or being tried. */
  transport: TransportName;
  /** code and reason of the close that led to "disconnected". */
  code?: number;
  reason?: string;
  /**
   * attempt counts the connection attempts since the client was last
   * connected: with "connecting", the attempt being made (1 for the first);
   * with "disconnected", the one that comes next.
   */
  attempt?: number;
  /**
   * delay is the time until the next attempt, in ms: 0 with "connecting";
   * with "disconnected", the backoff delay. Absent when no attempt is
   * scheduled: the client waits for the browser to be online, or has
   * stopped (see the "error" event).
   */
  delay?: number;
}

/** PublishOptions are the options of {@link Switchboard.publish}. */
export interface PublishOptions {
  /**
   * ephemeral: send now or fail at once (DisconnectedError when not
   * connected), never kept in the outbox nor sent again: for signals that
   * are worthless later, such as typing indicators.
   */
  ephemeral?: boolean;
}

/** ClientEvents lists the events of {@link Switchboard.on}. */
export interface ClientEvents extends Record<string, unknown> {
  state: StateEvent;
  /** error: something the application should know of (a refused token, a failed refresh). */
  error: Error;
  /** outbox: an outbox entry changed state. */
  outbox: readonly OutboxEntry[];
  /**
   * subscribed: the server subscribed this client to a channel (the
   * backend called POST /api/subscribe). The subscription is the client's
   * from now on, kept across reconnects; set its callbacks with
   * `setHandlers` in the listener, or listen to "publication".
   */
  subscribed: ServerSubscribedEvent;
  /** unsubscribed: the server ended a subscription (POST /api/unsubscribe): it is over. */
  unsubscribed: ServerUnsubscribedEvent;
  /** publication: every publication of a server-side subscription. */
  publication: Publication;
}

/** ServerSubscribedEvent is the payload of the "subscribed" event. */
export interface ServerSubscribedEvent {
  channel: string;
  subscription: Subscription;
  /** data the backend gave with the subscription, if any. */
  data?: unknown;
}

/** ServerUnsubscribedEvent is the payload of the "unsubscribed" event. */
export interface ServerUnsubscribedEvent {
  channel: string;
  subscription: Subscription;
  /** code 2000: the server API ended it. */
  code: number;
  reason: string;
}

/** HistoryOptions selects a part of a channel's history. */
export interface HistoryOptions {
  limit?: number;
  since?: { offset: number; epoch: string };
  reverse?: boolean;
}

const ALL: TransportName[] = ["websocket", "sse", "poll"];

function endpoints(url: string): { ws: string; http: string } {
  const u = new URL(url, (globalThis as any).location?.href);
  let path = u.pathname.replace(/\/+$/, "");
  if (path.endsWith("/ws")) path = path.slice(0, -3);
  const secure = u.protocol === "wss:" || u.protocol === "https:";
  const host = u.host;
  return {
    ws: `${secure ? "wss" : "ws"}://${host}${path}/ws`,
    http: `${secure ? "https" : "http"}://${host}${path}`,
  };
}

/** tokenExpiry reads a JWT's exp (seconds), for scheduling a refresh; 0 when absent. */
export function tokenExpiry(token: string | undefined): number {
  if (!token) return 0;
  try {
    const part = token.split(".")[1];
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : 0;
  } catch {
    return 0;
  }
}

function retryable(err: unknown): boolean {
  if (err instanceof DisconnectedError) return true;
  if (err instanceof ServerError) return err.temporary || err.code === 419 || err.code === 401;
  return true;
}

/**
 * Switchboard is a client of a Switchboard server. It connects at once,
 * reconnects with backoff, falls back from WebSocket to SSE to long
 * polling, resubscribes every channel from the last position it
 * delivered, and keeps publishes in a durable outbox until acknowledged.
 */
export class Switchboard {
  private readonly opts: SwitchboardOptions;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly subs = new Map<string, Subscription>();
  private readonly order: Subscription[] = [];
  private readonly backoff: Backoff;
  private readonly transports: TransportName[];
  private readonly urls: { ws: string; http: string };
  private readonly box: Outbox;
  private transport: Transport | null = null;
  private index = 0;
  private failures = 0;
  private token: string | undefined;
  private tokenStale = false;
  private closedForGood = false;
  private stopped: Error | null = null; // set when the server refused us for good
  private timers = { reconnect: 0 as any, stable: 0 as any, refresh: 0 as any, upgrade: 0 as any };
  private onlineHandler = () => this.wentOnline();
  private offlineHandler = () => this.wentOffline();
  private waiters: Array<() => void> = [];
  private attempts = 0; // connection attempts since the last connection
  private readonly rooms = new Map<string, Room>();
  // The subscriptions the transport carries: this.subs and this.order
  // themselves, or with sharedConnection the leader's wire subscriptions.
  private wsubs: Map<string, Subscription>;
  private worder: Subscription[];
  private shared: SharedState | null = null;
  private starting: Promise<void> = Promise.resolve();
  /** state is the current connection state. */
  state: ConnectionState = "disconnected";
  /** client is the id the server gave this connection (WebSocket, SSE). */
  clientId: string | undefined;

  constructor(url: string, opts: SwitchboardOptions = {}) {
    this.opts = opts;
    this.urls = endpoints(url);
    this.transports = opts.transports?.length ? [...opts.transports] : [...ALL];
    for (const t of this.transports) {
      if (!ALL.includes(t)) throw new TypeError(`switchboard: unknown transport ${t}`);
    }
    this.backoff = new Backoff(opts.backoff);
    this.token = opts.token;
    const store = opts.outbox === false ? new MemoryOutboxStore() : (opts.outbox ?? defaultStore());
    const support = !opts.hub && opts.sharedConnection !== false ? sharedSupport(opts.env) : null;
    // Shared: only the holder of the connection reads the stored outbox.
    this.box = new Outbox(store, this.urls.http, retryable, !support && !opts.hub);
    this.box.onChange = () => this.outboxChanged();
    this.wsubs = this.subs;
    this.worder = this.order;
    const g = globalThis as any;
    g.addEventListener?.("online", this.onlineHandler);
    g.addEventListener?.("offline", this.offlineHandler);
    if (opts.hub) {
      this.startHub(opts.hub);
    } else if (support) {
      this.wsubs = new Map();
      this.worder = [];
      this.shared = {
        tab: randomKey(),
        mode: "starting",
        name: "",
        bus: nullBus,
        leader: false,
        release: () => {},
        tabLock: () => {},
        refs: new Map(),
        joined: new Set(),
        pending: new Map(),
        transport: this.transports[0],
        gathering: false,
        pageHide: () => this.sharedBye(),
        pageShow: (ev: any) => {
          if (ev?.persisted) this.announce();
        },
        view: [],
        worker: null,
        heard: false,
        awaiting: false,
        ping: 0,
        outboxTimer: 0,
        persisting: Promise.resolve(),
        handing: new Map(),
        watched: new Set(),
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
  private get leading(): boolean {
    return !this.shared || this.shared.leader;
  }

  private timing(k: "gather" | "ping", def: number): number {
    return this.opts.sharedTimings?.[k] ?? def;
  }

  /**
   * startSharing finds who the connection is for (a getToken is asked
   * once now when there is no token), then joins the SharedWorker of that
   * server and identity, or the Web Locks election, or gives up sharing.
   */
  private async startSharing(sp: SharedSupport): Promise<void> {
    const sh = this.shared!;
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
    // Only the connection of the same identity may send a tab's stored
    // publishes: the shared outbox is scoped by server and identity.
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
  private holdTabLock(locks: Locks): Promise<void> {
    const sh = this.shared!;
    return new Promise<void>((granted) => {
      const held = new Promise<void>((r) => (sh.tabLock = r));
      locks
        .request(tabLockName(sh.tab), () => {
          sh.tabLocked = true;
          granted();
          return held;
        })
        .catch(() => granted());
    });
  }

  private startWorker(sp: SharedSupport): boolean {
    const sh = this.shared!;
    const g = globalThis as any;
    const raw = this.opts.workerUrl ?? defaultWorkerUrl();
    if (!raw) return false;
    let url: URL;
    try {
      url = new URL(String(raw), g.location?.href);
    } catch {
      return false;
    }
    // A SharedWorker must come from the page's origin.
    if (g.location?.origin && url.origin !== g.location.origin) return false;
    let w: SharedWorker;
    try {
      w = new sp.SW!(url.href, { name: sh.name, type: "module" });
    } catch {
      return false;
    }
    sh.mode = "worker";
    sh.worker = w;
    sh.heard = false;
    sh.awaiting = false;
    const port = w.port;
    port.onmessage = (ev: MessageEvent) => {
      if (sh.worker !== w) return;
      sh.heard = true;
      sh.awaiting = false;
      this.sharedMessage(ev.data as Message);
    };
    w.addEventListener?.("error", () => {
      // The script did not load (offline, 404, a CSP): the Web Locks way.
      if (sh.worker === w && !sh.heard) this.workerFailed(sp);
    });
    port.start?.();
    sh.bus = {
      post: (m) => port.postMessage(m),
      close: () => port.close(),
    };
    clearInterval(sh.ping);
    sh.ping = setInterval(() => this.checkWorker(sp), this.timing("ping", 4000));
    this.announce();
    return true;
  }

  /**
   * checkWorker pings the worker; one that has not answered since the last
   * ping is gone (it crashed, the browser stopped it): the tab starts (or
   * reaches) it again and joins anew. One that never answered at all is
   * given up for the Web Locks way.
   */
  private checkWorker(sp: SharedSupport): void {
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

  private workerFailed(sp: SharedSupport): void {
    const sh = this.shared!;
    clearInterval(sh.ping);
    sh.bus.close();
    sh.bus = nullBus;
    sh.worker = null;
    sh.joined.clear();
    if (sp.locks && sp.BC) this.startLocks(sp.locks, sp.BC);
    else this.unshare();
  }

  private startLocks(locks: Locks, BC: typeof BroadcastChannel): void {
    const sh = this.shared!;
    sh.mode = "locks";
    sh.locks = locks;
    const bc = new BC(sh.name);
    bc.onmessage = (ev: MessageEvent) => this.sharedMessage(ev.data as Message);
    sh.bus = {
      post: (m) => bc.postMessage(m),
      close: () => bc.close(),
    };
    const held = new Promise<void>((r) => (sh.release = r));
    locks
      .request(sh.name, () => {
        if (this.closedForGood) return Promise.resolve();
        this.becomeLeader();
        return held;
      })
      .catch(() => {});
    this.announce();
  }

  /** startHub makes this client the connection of a SharedWorker: it leads from the start. */
  private startHub(bus: Bus): void {
    this.box.setScope(sharedScope(this.urls.http, identityKey(this.token)));
    this.wsubs = new Map();
    this.worder = [];
    this.shared = {
      tab: "hub",
      mode: "hub",
      name: "",
      bus,
      leader: false,
      release: () => {},
      tabLock: () => {},
      refs: new Map(),
      joined: new Set(),
      pending: new Map(),
      transport: this.transports[0],
      gathering: false,
      pageHide: () => {},
      pageShow: () => {},
      view: [],
      worker: null,
      heard: true,
      awaiting: false,
      ping: 0,
      outboxTimer: 0,
      persisting: Promise.resolve(),
      handing: new Map(),
      watched: new Set(),
    };
    this.becomeLeader();
  }

  /** hubMessage hands the core of a SharedWorker a message of one of its tabs. @internal */
  hubMessage(m: Message): void {
    this.sharedMessage(m);
  }

  /** hubRefs lists the tabs subscribed to a channel. @internal */
  hubRefs(channel: string): ReadonlySet<string> | undefined {
    return this.shared?.refs.get(channel);
  }

  /**
   * unshare gives up sharing: this client connects on its own, and what it
   * asked of the holder it does itself.
   */
  private unshare(): void {
    const sh = this.shared;
    if (!sh) return;
    this.shared = null;
    clearInterval(sh.ping);
    sh.bus.close();
    sh.tabLock();
    const g = globalThis as any;
    g.removeEventListener?.("pagehide", sh.pageHide);
    g.removeEventListener?.("pageshow", sh.pageShow);
    this.wsubs = this.subs;
    this.worder = this.order;
    void this.box.sync();
    for (const p of sh.pending.values()) {
      const m = p.msg as Extract<Message, { t: "req" }>;
      const r = m.op === "publish" ? this.box.add(m.channel!, m.data, m.key, m.seq) : this.command(m.cmd!, true);
      r.then(p.resolve, p.reject);
    }
    if (!this.closedForGood) void this.connect();
  }

  private post(m: Message): void {
    try {
      this.shared?.bus.post(m);
    } catch {
      // closed
    }
  }

  /** fanout sends a leader message to the other tabs and handles it here. */
  private fanout(m: Message): void {
    this.post(m);
    this.fromLeader(m);
  }

  /** toLeader sends a tab message to the leader, which may be this tab. */
  private toLeader(m: Message): void {
    if (this.shared?.leader) this.fromTab(m);
    else this.post(m);
  }

  /**
   * announce tells the holder who this tab is and what it holds: its
   * subscriptions with the position each delivered last, and the requests
   * still unanswered (a new holder answers them; a publish keeps its key).
   */
  private announce(): void {
    const sh = this.shared;
    if (!sh || sh.leader || this.closedForGood) return;
    this.post({ t: "join", tab: sh.tab, config: this.sharedConfig() });
    for (const s of this.order) {
      if (s.state === "unsubscribed") continue;
      this.post({ t: "sub", tab: sh.tab, channel: s.channel, pos: s.position ? { ...s.position } : undefined, delta: s.delta });
    }
    for (const p of sh.pending.values()) this.post(p.msg);
  }

  private sharedConfig(): SharedConfig {
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
      memoryOutbox: o.outbox === false || undefined,
      tabLock: this.shared?.tabLocked || undefined,
    };
  }

  private sharedMessage(m: Message): void {
    if (this.closedForGood || !this.shared) return;
    if (TAB_MESSAGES.has(m.t)) {
      if (this.shared.leader) this.fromTab(m);
      return;
    }
    if (!this.shared.leader) this.fromLeader(m);
  }

  private becomeLeader(): void {
    const sh = this.shared!;
    sh.leader = true;
    sh.gathering = true;
    // What tabs stored and no holder sent yet (a leader gone before
    // sending, a tab gone before asking) is sent by this one.
    void this.box.sync();
    // Our own subscriptions first, then whatever the other tabs announce
    // in answer to hello, before connecting: each channel resumes from the
    // lowest position a tab delivered.
    for (const s of this.order) this.fromTab({ t: "sub", tab: sh.tab, channel: s.channel, pos: s.position ? { ...s.position } : undefined, delta: s.delta });
    if (sh.mode !== "hub") this.post({ t: "hello", leader: sh.tab });
    // Our own requests go to us now.
    for (const p of sh.pending.values()) this.fromTab(p.msg);
    this.outboxChanged();
    setTimeout(() => {
      sh.gathering = false;
      if (!this.closedForGood) void this.connect();
    }, this.timing("gather", 150));
  }

  /** fromTab handles, in the leader, a message of a tab (maybe itself). */
  private fromTab(m: Message): void {
    const sh = this.shared!;
    switch (m.t) {
      case "join":
        // Not hello: that would make every tab resend its pending requests.
        // A tab's subscribes and requests sent before this leader existed
        // are answered by the hello of becomeLeader.
        this.post({ t: "state", state: this.state, transport: this.transportName, clientId: this.clientId });
        this.outboxChanged();
        if (sh.mode === "locks" && m.config?.tabLock) this.watchTab(m.tab);
        return;
      case "sub": {
        let refs = sh.refs.get(m.channel);
        if (!refs) sh.refs.set(m.channel, (refs = new Set()));
        refs.add(m.tab);
        let w = this.wsubs.get(m.channel) as WireSub | undefined;
        if (!w) {
          w = new WireSub(m.channel, (x) => this.fanout(x), (s) => this.removeWire(s));
          if (m.pos && m.pos.offset !== null) w.position = { ...m.pos };
          // The connection's choice: delta when the first tab asked.
          w.delta = m.delta === "fossil" ? "fossil" : undefined;
          this.wsubs.set(m.channel, w);
          this.worder.push(w);
          this.transport?.subscriptionsChanged();
        } else if (w.state === "subscribed") {
          this.fanout({ t: "subscribed", channel: m.channel, pos: w.at() });
        } else if (w.state === "failed") {
          this.fanout({ t: "failed", channel: m.channel, message: "switchboard: subscribe refused" });
        } else if ((sh.gathering || !this.transport) && lower(m.pos, w.position)) {
          w.position = { ...m.pos! };
        }
        return;
      }
      case "unsub":
        this.unref(m.channel, m.tab);
        return;
      case "bye":
        for (const ch of [...sh.refs.keys()]) this.unref(ch, m.tab);
        // A publish the tab stored but had no time to hand over.
        void this.box.sync();
        return;
      case "online":
        this.wentOnline();
        return;
      case "req": {
        const reply = (ok: boolean, value?: unknown, err?: any) =>
          this.fanout({
            t: "res",
            to: m.tab,
            id: m.id,
            ok,
            value,
            error: err ? { name: err.name ?? "Error", message: err.message ?? String(err), code: err.code } : undefined,
          });
        const p = m.op === "publish" ? this.box.add(m.channel!, m.data, m.key, m.seq) : this.command(m.cmd!, true);
        p.then(
          (v) => reply(true, v),
          (e) => reply(false, undefined, e),
        );
        return;
      }
    }
  }

  /**
   * watchTab: a leader tab learns that a follower is gone, even without a
   * bye (a crash), when the browser grants it the follower's tab lock.
   */
  private watchTab(tab: string): void {
    const sh = this.shared!;
    if (!sh.locks || sh.watched.has(tab)) return;
    sh.watched.add(tab);
    sh.locks
      .request(tabLockName(tab), async () => {
        sh.watched.delete(tab);
        if (!this.closedForGood && this.shared === sh && sh.leader) this.fromTab({ t: "bye", tab });
      })
      .catch(() => {});
  }

  private unref(channel: string, tab: string): void {
    const refs = this.shared!.refs.get(channel);
    if (!refs || !refs.delete(tab) || refs.size > 0) return;
    this.shared!.refs.delete(channel);
    this.wsubs.get(channel)?.unsubscribe();
  }

  private removeWire(s: Subscription): void {
    if (this.wsubs.get(s.channel) !== s) return;
    this.wsubs.delete(s.channel);
    this.worder.splice(this.worder.indexOf(s), 1);
    this.transport?.subscriptionsChanged();
  }

  /** fromLeader handles, in every tab, a message of the leader (maybe itself). */
  private fromLeader(m: Message): void {
    const sh = this.shared!;
    switch (m.t) {
      case "hello":
        if (m.leader === sh.tab) return;
        this.announce();
        return;
      case "pub": {
        const s = this.subs.get(m.channel);
        if (!s || !sh.joined.has(m.channel)) return;
        s.deliver({ channel: m.channel, data: m.data, offset: m.offset });
        if (s.position && m.epoch !== undefined) s.position.epoch = m.epoch;
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
        s.subscribed(m.pos, undefined);
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
          if (same) return; // a join answered: nothing changed
          if (m.state === "connecting") for (const s of this.order) if (s.state === "subscribed") s.state = "subscribing";
          const extra: { code?: number; reason?: string; attempt?: number; delay?: number } = m.code ? { code: m.code, reason: m.reason } : {};
          if (m.attempt !== undefined) extra.attempt = m.attempt;
          if (m.delay !== undefined) extra.delay = m.delay;
          this.setState(m.state as ConnectionState, extra);
        }
        return;
      case "outbox":
        if (sh.leader) return;
        sh.view = m.entries.map((e) => ({ ...e, error: e.error === undefined ? undefined : new Error(e.error) }));
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
          const e = m.error!;
          p.reject(
            e.name === "ServerError" && e.code !== undefined
              ? new ServerError(e.code, e.message.replace(/^switchboard: \d+: /, ""))
              : e.name === "DisconnectedError"
                ? new DisconnectedError(e.message)
                : new Error(e.message),
          );
        }
        return;
      }
    }
  }

  /** giveToken runs getToken for the SharedWorker, which cannot call it. */
  private async giveToken(id: string): Promise<void> {
    const sh = this.shared!;
    try {
      if (!this.opts.getToken) throw new Error("switchboard: this tab has no getToken");
      const token = await this.opts.getToken();
      this.post({ t: "tok", tab: sh.tab, id, token });
    } catch (err) {
      this.post({ t: "tok", tab: sh.tab, id, error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** request sends a publish or command to the leader and waits for its answer (resent to a new leader). */
  private request(msg: { op: "publish" | "command"; channel?: string; data?: unknown; key?: string; seq?: number; cmd?: Record<string, unknown> }): Promise<any> {
    const sh = this.shared!;
    const id = randomKey();
    const full: Message = { t: "req", tab: sh.tab, id, ...msg };
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
  private sharedPublish(channel: string, data: unknown): Promise<{ offset: number }> {
    const sh = this.shared!;
    const key = randomKey();
    sh.handing.set(key, { id: key, channel, data, state: "queued" });
    // Written at once (IndexedDB runs the writes in order), handed over in order.
    // Once the identity (and so the outbox's scope) is known.
    const put = this.starting.then(() => this.box.persist(channel, data, key)).catch(() => undefined);
    const stored = sh.persisting.then(() => put);
    sh.persisting = stored;
    return stored.then((seq) => {
      sh.handing.delete(key);
      if (!this.shared) return this.box.add(channel, data, key, seq);
      return this.request({ op: "publish", channel, data, key, seq });
    });
  }

  private outboxChanged(): void {
    this.emitter.emit("outbox", this.outbox);
    const sh = this.shared;
    if (!sh?.leader || sh.outboxTimer) return;
    // Coalesced: a burst of acks is one message.
    sh.outboxTimer = setTimeout(() => {
      sh.outboxTimer = 0;
      if (this.closedForGood) return;
      const entries: WireEntry[] = this.box.entries.map((e) => ({ id: e.id, channel: e.channel, data: e.data, state: e.state, offset: e.offset, error: e.error?.message }));
      this.post({ t: "outbox", entries });
    }, 0);
  }

  private error(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.emitter.emit("error", e);
    if (this.shared?.leader) this.post({ t: "error", message: e.message });
  }

  private sharedBye(): void {
    const sh = this.shared;
    // The leader's going hands over on its own (the lock is released).
    if (!sh || sh.leader) return;
    this.post({ t: "bye", tab: sh.tab });
  }

  /** transportName is the transport in use or being tried. */
  get transportName(): TransportName {
    if (this.shared && !this.shared.leader) return this.shared.transport as TransportName;
    return this.transports[this.index];
  }

  /** outbox lists the publishes not acknowledged yet (and those failed for good). */
  get outbox(): readonly OutboxEntry[] {
    const sh = this.shared;
    if (!sh) return this.box.entries;
    // The holder's outbox, and this tab's publishes it has not listed yet
    // (being stored, or on their way).
    const base = sh.leader ? this.box.entries : sh.view;
    const mine: OutboxEntry[] = [];
    if (!sh.leader) {
      const listed = new Set(sh.view.map((e) => e.id));
      for (const p of sh.pending.values()) {
        const m = p.msg;
        if (m.t === "req" && m.op === "publish" && !listed.has(m.key!)) mine.push({ id: m.key!, channel: m.channel!, data: m.data, state: "queued" });
      }
    }
    mine.push(...sh.handing.values());
    return mine.length ? [...base, ...mine] : base;
  }

  /** dropFailed removes the entries that failed for good from {@link outbox}. */
  dropFailed(): void {
    this.box.dropFailed();
  }

  /** on registers a listener and returns a function that removes it. */
  on<K extends keyof ClientEvents>(name: K, fn: (e: ClientEvents[K]) => void): () => void {
    return this.emitter.on(name, fn);
  }

  /** subscribe starts receiving a channel. One subscription per channel and client. */
  subscribe(channel: string, handlers: SubscriptionHandlers = {}): Subscription {
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
  private serverSub(channel: string): Subscription {
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
  private serverSubscribed(channel: string, data: unknown): Subscription | undefined {
    if (this.wsubs.has(channel)) return undefined;
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
  private serverUnsubscribed(sub: Subscription, code: number, reason: string): void {
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

  private removeSub(s: Subscription): void {
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
  publish(channel: string, data: unknown, opts: PublishOptions = {}): Promise<{ offset: number }> {
    if (data === undefined) return Promise.reject(new TypeError("switchboard: publish needs data (null is fine)"));
    if (this.closedForGood) return Promise.reject(new DisconnectedError("switchboard: client closed"));
    if (opts.ephemeral) return this.publishNow(channel, data);
    if (this.shared) return this.sharedPublish(channel, data);
    return this.box.add(channel, data);
  }

  /** publishNow sends an ephemeral publish on the connection as it is, without the outbox. */
  private publishNow(channel: string, data: unknown): Promise<{ offset: number }> {
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
  presence(channel: string): Promise<{ clients: ClientInfo[]; num_clients: number; num_users: number }> {
    return this.command({ command: "presence", channel });
  }

  /** presenceStats counts the clients and users of a channel (over SSE and long polling: GET /presence_stats). */
  presenceStats(channel: string): Promise<{ num_clients: number; num_users: number }> {
    return this.command({ command: "presence_stats", channel });
  }

  /** history reads a channel's history (over SSE and long polling: GET /history). */
  history(channel: string, opts: HistoryOptions = {}): Promise<{ publications: Publication[]; offset: number; epoch: string }> {
    return this.command({ command: "history", channel, ...opts });
  }

  /**
   * rpc calls a method of the application's backend through the server (the
   * rpc command, docs/backend.md) and resolves with the data it answered.
   * The backend's refusals reject with its code; 503 means it was down or
   * slow (retry). WebSocket only.
   */
  async rpc(method: string, data?: unknown): Promise<unknown> {
    const cmd: Record<string, unknown> = { command: "rpc", method };
    if (data !== undefined) cmd.data = data;
    const res = await this.command(cmd);
    return res?.data;
  }

  private async command(cmd: Record<string, unknown>, local = false): Promise<any> {
    if (this.closedForGood) throw new DisconnectedError("switchboard: client closed");
    if (this.shared && !local) {
      await this.starting;
      if (this.shared) return this.request({ op: "command", cmd });
    }
    if (this.stopped && !this.transport) throw this.stopped;
    if (this.state !== "connected") await new Promise<void>((r) => this.waiters.push(r));
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
  async joinRoom(name: string, opts: RoomOptions = {}): Promise<Room> {
    if (this.shared) throw new Error("switchboard: joinRoom needs the tab's own connection: create the client with sharedConnection: false");
    if (this.rooms.has(name)) throw new Error(`switchboard: already in room ${name}`);
    const room: Room = new Room(name, opts, {
      command: (cmd) => this.command(cmd),
      forget: () => {
        if (this.rooms.get(name) === room) this.rooms.delete(name);
      },
    });
    this.rooms.set(name, room);
    try {
      return await room.join();
    } catch (err) {
      if (this.rooms.get(name) === room) this.rooms.delete(name);
      void room.leave(); // if the join got through, the server forgets it too
      throw err;
    }
  }

  /** close ends the connection for good. Queued publishes stay stored for the next page. */
  close(): void {
    if (this.closedForGood) return;
    this.closedForGood = true;
    for (const k of Object.keys(this.timers) as Array<keyof typeof this.timers>) clearTimeout(this.timers[k]);
    const g = globalThis as any;
    g.removeEventListener?.("online", this.onlineHandler);
    g.removeEventListener?.("offline", this.offlineHandler);
    this.transport?.close();
    this.transport = null;
    this.box.close(new DisconnectedError("switchboard: client closed"));
    this.setState("disconnected", { code: 1000, reason: "closed by client" });
    for (const f of this.waiters.splice(0)) f(); // they throw DisconnectedError
    const sh = this.shared;
    if (sh) {
      // Another tab takes the lock and the connection.
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

  private setState(state: ConnectionState, extra: { code?: number; reason?: string; attempt?: number; delay?: number } = {}): void {
    if (this.shared?.leader && !this.closedForGood) {
      this.post({ t: "state", state, transport: this.transportName, clientId: this.clientId, ...extra });
      if (state === "connecting") for (const s of this.order) if (s.state === "subscribed") s.state = "subscribing";
    }
    this.state = state;
    if (state !== "connected") for (const r of [...this.rooms.values()]) r.disconnected();
    this.emitter.emit("state", { state, transport: this.transportName, ...extra });
    if (state === "connected") {
      const w = this.waiters.splice(0);
      for (const f of w) f();
    }
  }

  private offline(): boolean {
    const nav = (globalThis as any).navigator;
    return nav?.onLine === false;
  }

  private async connect(): Promise<void> {
    if (this.closedForGood || this.transport || !this.leading) return;
    if (this.offline()) {
      // Wait for the "online" event: attempts now would only fail.
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
    let t: Transport;
    const ctx: TransportContext = {
      wsURL: this.urls.ws,
      httpURL: this.urls.http,
      env: this.opts.env ?? {},
      pingInterval: this.opts.pingInterval ?? 25_000,
      protocol: this.opts.protocol ?? "json",
      token: () => this.token,
      subscriptions: () => this.worder.filter((s) => s.state !== "failed"),
      opened: (info) => this.opened(t, info),
      identified: (client) => {
        if (t === this.transport) this.clientId = client;
      },
      publication: (p) => this.wsubs.get(p.channel)?.deliver(p),
      serverSubscribed: (channel, data) => (t === this.transport ? this.serverSubscribed(channel, data) : undefined),
      serverUnsubscribed: (sub, code, reason) => {
        if (t === this.transport) this.serverUnsubscribed(sub, code, reason);
      },
      room: (m) => this.rooms.get(m.room)?.push(m.event, m.data),
      closed: (info) => this.transportClosed(t, info),
    };
    if (name === "websocket") t = new WebSocketTransport(ctx);
    else if (name === "sse") t = new SSETransport(ctx);
    else t = new PollTransport(ctx);
    this.transport = t;
    t.open();
  }

  private opened(t: Transport, info: { client?: string; expires?: number }): void {
    if (t !== this.transport) return;
    this.failures = 0;
    this.attempts = 0;
    this.clientId = info.client;
    this.setState("connected");
    clearTimeout(this.timers.stable);
    this.timers.stable = setTimeout(() => this.backoff.reset(), this.opts.stablePeriod ?? 5000);
    this.scheduleRefresh(info.expires || tokenExpiry(this.token));
    this.box.setSender((e) => t.publish(e.channel, e.data, e.id));
    if (this.index > 0) {
      clearTimeout(this.timers.upgrade);
      this.timers.upgrade = setTimeout(() => this.upgrade(), this.opts.upgradeAfter ?? 30_000);
    }
  }

  private upgrade(): void {
    if (this.closedForGood || this.index === 0) return;
    const again = () => {
      clearTimeout(this.timers.upgrade);
      if (!this.closedForGood && this.index !== 0) this.timers.upgrade = setTimeout(() => this.upgrade(), this.opts.upgradeAfter ?? 30_000);
    };
    if (this.transports[0] === "websocket") {
      // Probe first, so that a WebSocket that is still blocked does not
      // cost the working fallback a reconnect.
      const WS = this.opts.env?.WebSocket ?? globalThis.WebSocket;
      let probe: WebSocket;
      try {
        probe = new WS(this.urls.ws);
      } catch {
        again();
        return;
      }
      probe.onopen = () => {
        probe.onclose = null;
        probe.close(1000);
        this.switchToFirst();
      };
      probe.onclose = () => again();
      probe.onerror = () => {};
      return;
    }
    this.switchToFirst();
  }

  private switchToFirst(): void {
    if (this.closedForGood || this.index === 0) return;
    // Positions carry over: WebSocket resubscribes with `since` and
    // misses nothing.
    this.transport?.close();
    this.transport = null;
    this.box.setSender(null);
    this.index = 0;
    this.failures = 0;
    void this.connect();
  }

  private scheduleRefresh(exp: number): void {
    clearTimeout(this.timers.refresh);
    if (!exp || !this.opts.getToken) return;
    const remaining = exp * 1000 - Date.now();
    const lead = Math.min(30_000, Math.max(remaining / 4, 0));
    this.timers.refresh = setTimeout(() => void this.refresh(), Math.max(0, remaining - lead));
  }

  private async refresh(): Promise<void> {
    const t = this.transport;
    if (!t || !this.opts.getToken) return;
    let token: string;
    try {
      token = await this.opts.getToken();
    } catch (err) {
      this.error(err);
      this.timers.refresh = setTimeout(() => void this.refresh(), 1000);
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
      // The connection will be closed with 4005 if this cannot be fixed;
      // reconnecting with the new token is the surest way.
      this.tokenStale = false;
      t.close();
      this.transportClosed(t, { code: 0, reason: "refresh failed", opened: true });
    }
  }

  private transportClosed(t: Transport, info: CloseInfo): void {
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
      // 4500-4999 (4502: bad credentials): reconnecting as is would loop.
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
      // The "online" event reconnects: no attempt is scheduled.
      this.setState("disconnected", { ...closed, attempt: this.attempts + 1 });
      return;
    }
    const delay = this.scheduleReconnect();
    this.setState("disconnected", { ...closed, attempt: this.attempts + 1, delay });
  }

  /** stop gives up reconnecting: commands waiting for a connection fail. */
  private stop(err: Error): void {
    this.stopped = err;
    this.error(err);
    for (const f of this.waiters.splice(0)) f();
  }

  /** scheduleReconnect sets the reconnect timer to the next backoff delay and returns it. */
  private scheduleReconnect(): number {
    clearTimeout(this.timers.reconnect);
    const delay = this.backoff.next();
    this.timers.reconnect = setTimeout(() => void this.connect(), delay);
    return delay;
  }

  private wentOffline(): void {
    const t = this.transport;
    if (!t) return;
    t.close();
    this.transportClosed(t, { code: 0, reason: "offline", opened: true });
  }

  private wentOnline(): void {
    const sh = this.shared;
    // The worker's own "online" may lag or not come (an emulated network).
    if (sh && !sh.leader && sh.mode === "worker") this.post({ t: "online", tab: sh.tab });
    if (this.closedForGood || this.transport || !this.leading) return;
    clearTimeout(this.timers.reconnect);
    this.backoff.reset();
    void this.connect();
  }
}

/** sharedScope is the outbox scope of a shared connection: its server and identity. */
function sharedScope(http: string, who: string): string {
  return `${http}#${who}`;
}

function tabLockName(tab: string): string {
  return `switchboard-tab:${tab}`;
}

/** tabLockName is the Web Lock a tab of a shared connection holds while it lives. @internal */
export { tabLockName };

interface SharedState {
  /** tab identifies this client among the tabs ("hub" in a SharedWorker). */
  tab: string;
  /** mode: choosing (starting), a SharedWorker's tab, a Web Locks tab, or the worker's core (hub). */
  mode: "starting" | "worker" | "locks" | "hub";
  /** name of the share: the server and identity (lock, BroadcastChannel and worker name). */
  name: string;
  bus: Bus;
  /** leader: this client holds the connection. */
  leader: boolean;
  /** release lets the leader lock go. */
  release: () => void;
  /** tabLock lets this tab's liveness lock go; tabLocked: it is held. */
  tabLock: () => void;
  tabLocked?: boolean;
  /** locks (Web Locks way): to watch the followers' tab locks, watched: those watched. */
  locks?: Locks;
  watched: Set<string>;
  /** refs: in the leader, the tabs subscribed to each channel. */
  refs: Map<string, Set<string>>;
  /** joined: our channels the leader confirmed (publications before that are not ours yet). */
  joined: Set<string>;
  /** pending: our requests waiting for the leader's answer. */
  pending: Map<string, { msg: Message; resolve: (v: any) => void; reject: (e: Error) => void }>;
  /** transport the leader uses. */
  transport: string;
  /** gathering: a new leader waits for the tabs' positions before connecting. */
  gathering: boolean;
  pageHide: () => void;
  pageShow: (ev: any) => void;
  /** view: in a tab that does not hold the connection, the holder's outbox. */
  view: OutboxEntry[];
  /** worker: the SharedWorker, heard (it answered once), awaiting (a ping unanswered), ping (its timer). */
  worker: SharedWorker | null;
  heard: boolean;
  awaiting: boolean;
  ping: any;
  outboxTimer: any;
  /** persisting: the tab's publishes are stored, then handed over, in order; handing: those not handed yet. */
  persisting: Promise<unknown>;
  handing: Map<string, OutboxEntry>;
}
