// The core of the SharedWorker variant of sharedConnection: one Switchboard
// client (the "hub") holds the connection and the wire subscriptions for
// every tab connected to the worker over a MessagePort. It speaks the
// messages of shared.ts: tabs join (with the options the connection needs,
// since a function cannot cross a port), subscribe, unsubscribe, ask, and
// say bye; the hub answers each tab on its own port and sends publications
// only to the tabs subscribed to their channel.
//
// A tab can go without a word (closed, crashed, frozen). The hub learns it
// three ways: a "bye" on pagehide; the tab's Web Lock, held for the tab's
// life, which the hub asks for and is granted when the tab is gone; and,
// where there are no Web Locks, a tab not heard from (it pings every few
// seconds) for `silence` ms. A tab dropped by mistake is told hello when it
// speaks again, and joins anew.

import { Switchboard, tabLockName } from "./client.js";
import type { OutboxStore } from "./outbox.js";
import type { Bus, Locks, Message, SharedConfig } from "./shared.js";

/** HubOptions tune a Hub (tests). */
export interface HubOptions {
  /** locks: the Web Locks of the worker (navigator.locks), to learn that a tab holding its lock is gone. */
  locks?: Locks;
  /** silence: without locks, a tab not heard from this long is dropped, in ms. Default 60000. */
  silence?: number;
  /** env, outbox and sharedTimings are handed to the client (tests). */
  env?: Record<string, unknown>;
  outbox?: OutboxStore;
  sharedTimings?: { gather?: number; ping?: number };
}

/** PortLike is the part of a MessagePort the hub uses. */
export interface PortLike {
  postMessage(m: unknown): void;
  onmessage: ((ev: MessageEvent) => void) | null;
  start?(): void;
  close?(): void;
}

interface Tab {
  id: string;
  port: PortLike;
  hasGetToken: boolean;
  seen: number;
  /** watched: the hub waits for the tab's lock. */
  watched: boolean;
}

/** Hub holds one connection for the tabs connected to a SharedWorker. */
export class Hub {
  /** client is the connection, made when the first tab joins. */
  client: Switchboard | null = null;
  /** tabs by id. */
  readonly tabs = new Map<string, Tab>();
  private readonly opts: HubOptions;
  private readonly url: string;
  private readonly tokenAsks = new Map<string, { tab: string; resolve: (t: string) => void; reject: (e: Error) => void }>();
  private sweeper: any = 0;
  private nextAsk = 0;

  /** url is the server the worker connects to (its name says which). */
  constructor(url: string, opts: HubOptions = {}) {
    this.url = url;
    this.opts = opts;
    // Tabs without a watched lock are dropped after a silence.
    const silence = opts.silence ?? 60_000;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const t of [...this.tabs.values()]) if (!t.watched && now - t.seen > silence) this.drop(t);
    }, Math.max(10, silence / 4));
    (this.sweeper as any)?.unref?.();
  }

  /** connect takes a new tab's port. */
  connect(port: PortLike): void {
    port.onmessage = (ev: MessageEvent) => this.message(port, ev.data as Message);
    port.start?.();
  }

  /** close ends the connection (tests). */
  close(): void {
    clearInterval(this.sweeper);
    this.client?.close();
  }

  private message(port: PortLike, m: Message): void {
    if (!m || typeof m !== "object" || !("tab" in m)) return;
    let tab = this.tabs.get(m.tab);
    if (tab && tab.port !== port) tab = undefined; // the same tab on a new port: joins anew
    if (!tab) {
      if (m.t === "bye") return;
      if (m.t !== "join") {
        // Dropped (or from before a worker restart): it joins anew.
        port.postMessage({ t: "hello", leader: "hub" } satisfies Message);
        return;
      }
      tab = this.admit(port, m.tab, m.config);
    }
    tab.seen = Date.now();
    switch (m.t) {
      case "ping":
        port.postMessage({ t: "pong" } satisfies Message);
        return;
      case "tok": {
        const ask = this.tokenAsks.get(m.id);
        if (!ask) return;
        this.tokenAsks.delete(m.id);
        if (m.token !== undefined) ask.resolve(m.token);
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

  private admit(port: PortLike, id: string, config?: SharedConfig): Tab {
    const old = this.tabs.get(id);
    if (old) this.drop(old);
    const tab: Tab = { id, port, hasGetToken: !!config?.hasGetToken, seen: Date.now(), watched: false };
    this.tabs.set(id, tab);
    const locks = this.opts.locks;
    if (locks && config?.tabLock) {
      tab.watched = true;
      // Granted once the tab is gone (its lock is released with it).
      locks
        .request(tabLockName(id), async () => {
          if (this.tabs.get(id) === tab) this.drop(tab);
        })
        .catch(() => {});
    }
    return tab;
  }

  /** drop forgets a tab: its subscriptions are released, its token asks go to another tab. */
  private drop(tab: Tab): void {
    if (this.tabs.get(tab.id) !== tab) return;
    this.tabs.delete(tab.id);
    for (const [id, ask] of [...this.tokenAsks]) {
      if (ask.tab !== tab.id) continue;
      this.tokenAsks.delete(id);
      this.askToken().then(ask.resolve, ask.reject);
    }
    this.client?.hubMessage({ t: "bye", tab: tab.id });
  }

  private start(config: SharedConfig): void {
    const bus: Bus = {
      post: (m) => this.route(m),
      close() {},
    };
    this.client = new Switchboard(this.url, {
      token: config.token,
      getToken: config.hasGetToken ? () => this.askToken() : undefined,
      transports: config.transports,
      backoff: config.backoff,
      stablePeriod: config.stablePeriod,
      fallbackAfter: config.fallbackAfter,
      upgradeAfter: config.upgradeAfter,
      pingInterval: config.pingInterval,
      protocol: config.protocol,
      outbox: config.memoryOutbox ? false : this.opts.outbox,
      env: this.opts.env as any,
      sharedTimings: this.opts.sharedTimings,
      hub: bus,
    });
  }

  /** route sends a message of the connection to the tabs it concerns. */
  private route(m: Message): void {
    const send = (t: Tab | undefined) => {
      try {
        t?.port.postMessage(m);
      } catch {
        // a port closed under us: the tab's lock or silence will drop it
      }
    };
    switch (m.t) {
      case "res":
      case "tokreq":
        send(this.tabs.get(m.to));
        return;
      case "ssub":
        // A server-side subscription concerns every tab, at once: what
        // the connection delivers of it from now on goes to them all.
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
  askToken(): Promise<string> {
    let best: Tab | undefined;
    for (const t of this.tabs.values()) if (t.hasGetToken && (!best || t.seen > best.seen)) best = t;
    if (!best) return Promise.reject(new Error("switchboard: no tab can give a token"));
    const id = String(++this.nextAsk);
    const tab = best;
    return new Promise<string>((resolve, reject) => {
      this.tokenAsks.set(id, { tab: tab.id, resolve, reject });
      try {
        tab.port.postMessage({ t: "tokreq", to: tab.id, id } satisfies Message);
      } catch {
        this.drop(tab);
      }
    });
  }
}
