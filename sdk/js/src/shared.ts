// sharedConnection: the tabs of one origin share one server connection.
//
// Every client with sharedConnection asks for a Web Lock named after the
// server. The tab holding it is the leader: it alone owns a transport and
// its subscriptions (the "wire" subscriptions, one per channel, reference
// counted by tab) and the outbox. It fans everything out on a
// BroadcastChannel: publications with their offsets, gaps, subscribe
// confirmations, the connection state, and the answers to the other tabs'
// requests (publish, history, presence). Every tab, the leader included,
// delivers through its own Subscription objects, which drop offsets they
// already delivered. When the leader goes (tab closed, client closed), the
// browser gives the lock to another tab, which says hello; the tabs
// announce their subscriptions again with the position each delivered last,
// and the new leader resubscribes every channel from the lowest of them.

import { Subscription } from "./subscription.js";
import type { Gap, GapReason, Publication, StreamPosition } from "./types.js";

/** Message is what travels on the BroadcastChannel. */
export type Message =
  // tab -> leader
  | { t: "join"; tab: string }
  | { t: "sub"; tab: string; channel: string; pos?: StreamPosition }
  | { t: "unsub"; tab: string; channel: string }
  | { t: "bye"; tab: string }
  | { t: "req"; tab: string; id: string; op: "publish" | "command"; channel?: string; data?: unknown; key?: string; cmd?: Record<string, unknown> }
  // leader -> tabs
  | { t: "hello"; leader: string }
  | { t: "pub"; channel: string; data: unknown; offset: number; epoch?: string }
  | { t: "gap"; channel: string; reason: GapReason; offset?: number | null; epoch?: string }
  | { t: "subscribed"; channel: string; pos: StreamPosition }
  | { t: "failed"; channel: string; message: string }
  | { t: "state"; state: string; transport: string; code?: number; reason?: string; clientId?: string }
  | { t: "res"; to: string; id: string; ok: boolean; value?: unknown; error?: { name: string; message: string; code?: number } };

/** LockManager is the part of navigator.locks used here. */
export interface Locks {
  request(name: string, cb: () => Promise<void>): Promise<unknown>;
}

/** sharedSupport returns the platform pieces sharing needs, or null when one is missing. */
export function sharedSupport(env: any): { locks: Locks; BC: typeof BroadcastChannel } | null {
  const g = globalThis as any;
  const locks: Locks | undefined = env?.locks ?? g.navigator?.locks;
  const BC: typeof BroadcastChannel | undefined = env?.BroadcastChannel ?? g.BroadcastChannel;
  if (!locks || typeof locks.request !== "function" || !BC) return null;
  return { locks, BC };
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
