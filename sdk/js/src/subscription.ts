// A subscription: its position, and the exactly-once, in-order delivery of
// its channel's publications whatever transport they come from.

import type { ClientInfo, Gap, GapReason, Publication, StreamPosition } from "./types.js";

/** SubscriptionHandlers are the callbacks of one subscription. */
export interface SubscriptionHandlers {
  /** onPublication gets each publication once, in offset order. */
  onPublication?: (p: Publication) => void;
  /** onGap says that publications may be missing (never silently). */
  onGap?: (g: Gap) => void;
  /** onError reports a subscribe the server refused for good (403, 422...). */
  onError?: (err: Error) => void;
  /**
   * onJoin gets the server's join pushes: a client subscribed to the
   * channel. Only where the channel's namespace has `join_leave` on, and
   * over WebSocket and SSE (long polling carries none). Not recovered
   * across reconnects: after `ready` (and after a reconnect, see the
   * "state" event) ask `client.presence()` for the full list.
   */
  onJoin?: (info: ClientInfo) => void;
  /** onLeave gets the server's leave pushes, like onJoin. */
  onLeave?: (info: ClientInfo) => void;
  /**
   * delta asks the server for delta-compressed publications ("fossil"):
   * each publication after the first on a connection may come as the
   * difference from the one before, which the SDK applies, so that
   * onPublication still gets the full data. Over WebSocket only; SSE and
   * long polling ignore it. Worth it for channels whose publications are
   * large and change a little from one to the next.
   */
  delta?: "fossil";
}

/** SubscriptionState is the state of one subscription. */
export type SubscriptionState = "subscribing" | "subscribed" | "unsubscribed" | "failed";

/** Subscription is the handle returned by `client.subscribe`. */
export class Subscription {
  readonly channel: string;
  /** state: "subscribing" until the server confirmed (again after each reconnect). */
  state: SubscriptionState = "subscribing";
  /** position of the last publication delivered (what a resubscribe sends as `since`). */
  position: StreamPosition | undefined;
  /** ready resolves once subscribed (and recovered) the first time; rejects if refused. */
  readonly ready: Promise<void>;
  /** delivered counts publications handed to onPublication. */
  delivered = 0;
  /** duplicates counts publications dropped because they were already delivered. */
  duplicates = 0;
  /** delta is the delta compression asked for (SubscriptionHandlers.delta), if any. */
  delta: "fossil" | undefined;
  /**
   * server says the server made this subscription (POST /api/subscribe):
   * it came with the client's "subscribed" event. It is subscribed again
   * after a reconnect like any other.
   */
  server = false;
  /** @internal tap sees every publication delivered (the client's "publication" event). */
  tap?: (p: Publication) => void;

  private handlers: SubscriptionHandlers;
  private resolveReady!: () => void;
  private rejectReady!: (err: Error) => void;
  private settled = false;
  private readonly onUnsubscribe: (s: Subscription) => void;

  /** @internal */
  constructor(channel: string, handlers: SubscriptionHandlers, onUnsubscribe: (s: Subscription) => void) {
    this.channel = channel;
    this.handlers = handlers;
    this.delta = handlers.delta;
    this.onUnsubscribe = onUnsubscribe;
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // A caller that never awaits ready must not get an unhandled rejection.
    this.ready.catch(() => {});
  }

  /**
   * setHandlers sets callbacks of the subscription (those given replace
   * the ones it had): for a server-side subscription, call it in the
   * "subscribed" listener to get every publication.
   */
  setHandlers(handlers: SubscriptionHandlers): void {
    this.handlers = { ...this.handlers, ...handlers };
  }

  /** unsubscribe stops the subscription; no callback runs after it returns. */
  unsubscribe(): void {
    if (this.state === "unsubscribed") return;
    this.state = "unsubscribed";
    if (!this.settled) {
      this.settled = true;
      this.rejectReady(new Error("switchboard: unsubscribed"));
    }
    this.onUnsubscribe(this);
  }

  /** @internal since is the position to resume from, when one is known. */
  since(): { offset: number; epoch: string } | undefined {
    const p = this.position;
    if (!p || p.offset === null || p.epoch === undefined) return undefined;
    return { offset: p.offset, epoch: p.epoch };
  }

  /**
   * @internal subscribed records a (re)subscribe at `pos`: the server's
   * current position when it could not recover (or for a first subscribe),
   * after which live publications follow.
   */
  subscribed(pos: StreamPosition, recovered: boolean | undefined, publications?: Publication[]): void {
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
      // A subscribe without recovery (or a stream start) at pos.
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
  startAt(pos: StreamPosition): void {
    const prev = this.position;
    if (!prev || prev.offset === null) {
      this.position = { offset: pos.offset, epoch: pos.epoch ?? prev?.epoch };
      return;
    }
    if (pos.epoch !== undefined && prev.epoch !== undefined && pos.epoch !== prev.epoch) {
      this.gap("unrecovered", pos);
      return;
    }
    if (pos.offset !== null && pos.offset > prev.offset) {
      this.gap("unrecovered", pos);
      return;
    }
    // At or behind what we have: what follows is deduplicated by offset.
    if (pos.epoch !== undefined) prev.epoch = pos.epoch;
  }

  /** @internal failed records a refusal of the subscribe for good. */
  failed(err: Error): void {
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
  deliver(p: Publication): void {
    if (this.state === "unsubscribed") return;
    const pos = this.position;
    if (pos && pos.offset !== null) {
      if (p.offset <= pos.offset) {
        this.duplicates++;
        return;
      }
      if (p.offset > pos.offset + 1) {
        // The server never skips silently within a connection; a jump means
        // a position we could not send (long polling after a change).
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
  presenceEvent(kind: "join" | "leave", info: ClientInfo): void {
    if (this.state === "unsubscribed" || !info || typeof info !== "object") return;
    if (kind === "join") this.handlers.onJoin?.(info);
    else this.handlers.onLeave?.(info);
  }

  /** @internal gap tells the subscriber its state is stale and moves to `pos`. */
  gap(reason: GapReason, pos: StreamPosition): void {
    if (this.state === "unsubscribed") return;
    this.position = { offset: pos.offset, epoch: pos.epoch ?? this.position?.epoch };
    this.handlers.onGap?.({ channel: this.channel, reason, offset: pos.offset, epoch: pos.epoch });
  }
}
