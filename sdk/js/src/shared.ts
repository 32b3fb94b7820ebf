// sharedConnection: the tabs of one origin share one server connection.
//
// The connection is held by a SharedWorker (hub.ts) or, where there is
// none, by a leader tab: every client asks for a Web Lock named after the
// share (server and identity), and the tab holding it is the leader. The
// holder alone owns a transport and its subscriptions (the "wire"
// subscriptions, one per channel, reference counted by tab) and sends the
// outbox. It sends the tabs, over the worker's ports or a BroadcastChannel:
// publications with their offsets, gaps, subscribe confirmations, the
// connection state, the outbox, and the answers to the tabs' requests
// (publish, history, presence). Every tab delivers through its own
// Subscription objects, which drop offsets they already delivered. When a
// leader goes (tab closed, client closed), the browser gives the lock to
// another tab, which says hello; the tabs announce their subscriptions
// again with the position each delivered last, and the new leader
// resubscribes every channel from the lowest of them.

import type { BackoffOptions } from "./backoff.js";
import type { OutboxState } from "./outbox.js";
import { Subscription } from "./subscription.js";
import type { ClientInfo, Gap, GapReason, Publication, StreamPosition, TransportName } from "./types.js";

/** SharedConfig is what a tab tells a SharedWorker so it can connect for it (functions cannot cross). */
export interface SharedConfig {
  token?: string;
  /** hasGetToken: this tab can run getToken when the worker asks (tokreq). */
  hasGetToken: boolean;
  transports?: TransportName[];
  backoff?: BackoffOptions;
  stablePeriod?: number;
  fallbackAfter?: number;
  upgradeAfter?: number;
  pingInterval?: number;
  protocol?: "json" | "protobuf";
  /** memoryOutbox: the tab asked for outbox: false. */
  memoryOutbox?: boolean;
  /** tabLock: the tab holds its liveness lock (the worker may wait for it). */
  tabLock?: boolean;
}

/** WireEntry is an outbox entry as it travels to the tabs. */
export interface WireEntry {
  id: string;
  channel: string;
  data: unknown;
  state: OutboxState;
  offset?: number;
  error?: string;
}

/** Message is what travels on the BroadcastChannel or a SharedWorker's ports. */
export type Message =
  // tab -> holder of the connection (the leader tab, or the SharedWorker)
  | { t: "join"; tab: string; config?: SharedConfig }
  | { t: "sub"; tab: string; channel: string; pos?: StreamPosition; delta?: "fossil" }
  | { t: "unsub"; tab: string; channel: string }
  | { t: "bye"; tab: string }
  | { t: "req"; tab: string; id: string; op: "publish" | "command"; channel?: string; data?: unknown; key?: string; seq?: number; cmd?: Record<string, unknown> }
  | { t: "ping"; tab: string }
  | { t: "tok"; tab: string; id: string; token?: string; error?: string }
  | { t: "online"; tab: string }
  // holder -> tabs
  | { t: "hello"; leader: string }
  | { t: "pub"; channel: string; data: unknown; offset: number; epoch?: string }
  | { t: "gap"; channel: string; reason: GapReason; offset?: number | null; epoch?: string }
  | { t: "subscribed"; channel: string; pos: StreamPosition }
  | { t: "failed"; channel: string; message: string }
  | { t: "ssub"; channel: string; data?: unknown }
  | { t: "sunsub"; channel: string; code: number; reason: string }
  | { t: "state"; state: string; transport: string; code?: number; reason?: string; clientId?: string; attempt?: number; delay?: number }
  | { t: "presence"; channel: string; kind: "join" | "leave"; info: ClientInfo }
  | { t: "res"; to: string; id: string; ok: boolean; value?: unknown; error?: { name: string; message: string; code?: number } }
  | { t: "outbox"; entries: WireEntry[] }
  | { t: "error"; message: string }
  | { t: "pong" }
  | { t: "tokreq"; to: string; id: string };

/** TAB_MESSAGES are the message types a tab sends to the holder. */
export const TAB_MESSAGES = new Set(["join", "sub", "unsub", "bye", "req", "ping", "tok", "online"]);

/** Bus carries messages between a tab and the holder of the connection. */
export interface Bus {
  post(m: Message): void;
  close(): void;
}

/** LockManager is the part of navigator.locks used here. */
export interface Locks {
  request(name: string, cb: () => Promise<void>): Promise<unknown>;
}

/** SharedSupport is what the platform offers for sharing a connection. */
export interface SharedSupport {
  locks?: Locks;
  BC?: typeof BroadcastChannel;
  SW?: typeof SharedWorker;
}

/** sharedSupport returns the platform pieces sharing can use, or null when neither variant works. */
export function sharedSupport(env: any): SharedSupport | null {
  const g = globalThis as any;
  const locks: Locks | undefined = env?.locks ?? g.navigator?.locks;
  const BC: typeof BroadcastChannel | undefined = env?.BroadcastChannel ?? g.BroadcastChannel;
  const SW: typeof SharedWorker | undefined = env?.SharedWorker ?? g.SharedWorker;
  const ok = locks && typeof locks.request === "function" ? locks : undefined;
  if (!SW && !(ok && BC)) return null;
  return { locks: ok, BC, SW };
}

// fnv1a hashes a string's UTF-16 code units (32-bit FNV-1a from a given basis).
function fnv1a(s: string, basis: number): string {
  let h = basis >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/**
 * identityKey names who a connection is for, so that only tabs of one
 * identity share it: for a JWT the issuer and subject (a refreshed token
 * keeps them), for any other token the token itself, and "anonymous"
 * without one. It is a hash: names of locks and workers are visible to
 * every script of the origin, and need not show a token.
 */
export function identityKey(token: string | undefined): string {
  if (!token) return "anonymous";
  let id = "t:" + token;
  const parts = token.split(".");
  if (parts.length === 3) {
    try {
      const claims = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
      if (claims && typeof claims.sub === "string") id = "s:" + JSON.stringify([claims.iss ?? "", claims.sub]);
    } catch {
      // not a JWT: the token itself
    }
  }
  return fnv1a(id, 0x811c9dc5) + fnv1a(id, 0x050c5d1f);
}

/**
 * WireSub is a leader's subscription to a channel on behalf of every tab:
 * what the transport does to it is sent to the tabs.
 */
export class WireSub extends Subscription {
  private readonly send: (m: Message) => void;

  constructor(channel: string, send: (m: Message) => void, onUnsubscribe: (s: Subscription) => void) {
    const ref: { self?: WireSub } = {};
    super(
      channel,
      {
        onPublication: (p: Publication) => send({ t: "pub", channel, data: p.data, offset: p.offset, epoch: ref.self?.position?.epoch }),
        onGap: (g: Gap) => send({ t: "gap", channel, reason: g.reason, offset: g.offset, epoch: g.epoch }),
        onError: (err: Error) => send({ t: "failed", channel, message: err.message }),
        onJoin: (info: ClientInfo) => send({ t: "presence", channel, kind: "join", info }),
        onLeave: (info: ClientInfo) => send({ t: "presence", channel, kind: "leave", info }),
      },
      onUnsubscribe,
    );
    ref.self = this;
    this.send = send;
  }

  override subscribed(pos: StreamPosition, recovered: boolean | undefined, publications?: Publication[]): void {
    super.subscribed(pos, recovered, publications);
    if (this.state === "subscribed") this.send({ t: "subscribed", channel: this.channel, pos: this.at() });
  }

  /** at is the position the tabs join at. */
  at(): StreamPosition {
    return this.position ? { ...this.position } : { offset: null };
  }
}

/** lower says whether position a is before b in the same epoch. */
export function lower(a: StreamPosition | undefined, b: StreamPosition | undefined): boolean {
  if (!a || a.offset === null) return false;
  if (!b || b.offset === null) return true;
  if (a.epoch !== undefined && b.epoch !== undefined && a.epoch !== b.epoch) return false;
  return a.offset < b.offset;
}
