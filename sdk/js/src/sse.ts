// The Server-Sent Events transport: one EventSource for every channel,
// resumed with the id of the last event (lastEventId), publishing over
// POST /publish. EventSource cannot change its channel list, so a change
// opens a new stream.

import type { Subscription } from "./subscription.js";
import { httpPublish } from "./transport.js";
import type { Transport, TransportContext } from "./transport.js";
import { closeIsFatal } from "./types.js";
import type { Publication } from "./types.js";

/** OverlapTimeout bounds how long an old stream may take to catch up after a channel list change, in ms. */
export const OverlapTimeout = 10_000;

/** Feeds lets a stream tell the next one (during an overlap) what it delivered. */
interface Feeds {
  onRelease: ((channel: string) => void) | null;
}

/** MaxStreamChannels is the most channels one SSE stream or poll may carry. */
export const MaxStreamChannels = 16;

export class SSETransport implements Transport {
  readonly name = "sse" as const;
  private es: EventSource | null = null;
  private ended = false;
  private started = false; // the server answered (connected event) at least once
  /** subs: the subscriptions of the current stream's channels, in its order (undefined: no longer subscribed). */
  private subs: Array<Subscription | undefined> = [];
  private feeds: Feeds | null = null;
  private finishOverlap: ((abandon?: boolean) => void) | null = null;

  constructor(private ctx: TransportContext) {}

  open(): void {
    const ES = this.ctx.env.EventSource ?? globalThis.EventSource;
    if (!ES) {
      setTimeout(() => this.end(0, "sse: no EventSource", false));
      return;
    }
    this.stream();
  }

  private stream(): void {
    // A change during an overlap ends that overlap first (reporting what
    // its old stream did not bring).
    this.finishOverlap?.();
    const old = this.es;
    const oldFeeds = this.feeds;
    this.es = null;
    const current = this.ctx.subscriptions().slice(0, MaxStreamChannels);
    let names = current.map((s) => s.channel);
    let listKey = "sse " + names.join(" ");
    // The first stream of a connection resumes the list of the last one
    // when the list changed meanwhile (an id only fits its own list); the
    // new list follows at once, overlapping it.
    const prevKey = this.ctx.resume.get("sse list");
    const resumeFirst = !old && prevKey !== undefined && prevKey !== listKey && this.ctx.resume.has(prevKey);
    if (resumeFirst) {
      listKey = prevKey!;
      names = listKey.slice(4).split(" ");
    }
    const byName = new Map(current.map((s) => [s.channel, s]));
    this.subs = names.map((n) => byName.get(n));
    if (names.length === 0) {
      old?.close();
      // Nothing to stream: publish still works over HTTP.
      if (!this.started) {
        this.started = true;
        this.ctx.opened({});
      }
      return;
    }
    this.ctx.resume.set("sse list", listKey);
    const ES = (this.ctx.env.EventSource ?? globalThis.EventSource)!;
    const q = new URLSearchParams();
    for (const n of names) q.append("channel", n);
    const last = this.ctx.resume.get(listKey);
    if (last) q.set("lastEventId", last);
    const token = this.ctx.token();
    if (token) q.set("token", token);
    let es: EventSource;
    try {
      es = new ES(`${this.ctx.httpURL}/sse?${q}`);
    } catch (err) {
      old?.close();
      setTimeout(() => this.end(0, `sse: ${String(err)}`, false));
      return;
    }
    this.es = es;
    // A stream that cannot resume from an id (a new channel list) starts
    // from now. The old stream stays open until it has delivered, for each
    // channel the two share, up to where the new one starts; the new
    // stream's publications of such a channel wait meanwhile. Duplicates
    // are dropped by offset.
    const catching = new Map<string, { target: number; held: Publication[] }>();
    let overlap: ReturnType<typeof setTimeout> | undefined;
    let oldDone = !old;
    const finishOverlap = (abandon = false) => {
      oldDone = true;
      if (this.finishOverlap === finishOverlap) this.finishOverlap = null;
      clearTimeout(overlap);
      if (old) old.close();
      if (oldFeeds) oldFeeds.onRelease = null;
      if (abandon) {
        // The transport ends: the next connection resumes from the
        // positions, which the held publications did not move.
        catching.clear();
        return;
      }
      for (const [ch, c] of catching) {
        const sub = byName.get(ch);
        // Whatever the old stream did not bring is lost: say so.
        if (sub) {
          sub.startAt({ offset: c.target, epoch: sub.position?.epoch });
          for (const p of c.held) sub.deliver(p);
        }
      }
      catching.clear();
    };
    const release = (ch: string) => {
      const c = catching.get(ch);
      const sub = byName.get(ch);
      if (!c || !sub || (sub.position?.offset ?? -1) < c.target) return;
      catching.delete(ch);
      for (const p of c.held) sub.deliver(p);
      if (catching.size === 0) finishOverlap();
    };
    this.finishOverlap = finishOverlap;
    const feeds: Feeds = { onRelease: null };
    this.feeds = feeds;
    if (oldFeeds) oldFeeds.onRelease = release;
    let connected = false;
    const remember = (e: MessageEvent) => {
      if (e.lastEventId) this.ctx.resume.set(listKey, e.lastEventId);
    };
    const deliver = (sub: Subscription, p: Publication) => {
      sub.deliver(p);
      feeds.onRelease?.(sub.channel);
    };
    es.addEventListener("connected", (e) => {
      const ev = e as MessageEvent;
      const d = JSON.parse(ev.data);
      connected = true;
      remember(ev);
      if (!this.started) {
        this.started = true;
        this.ctx.opened({ client: d.client });
      } else if (d.client) {
        this.ctx.identified(d.client);
      }
      for (const c of d.channels ?? []) {
        const sub = byName.get(c.channel);
        if (!sub) continue;
        const pos = sub.position;
        const behind = !oldDone && !last && pos && pos.offset !== null && pos.epoch === c.epoch && pos.offset < c.offset;
        if (behind) {
          catching.set(c.channel, { target: c.offset, held: [] });
          sub.subscribed({ offset: pos.offset, epoch: c.epoch }, undefined);
        } else {
          sub.subscribed({ offset: c.offset, epoch: c.epoch }, undefined);
        }
      }
      if (catching.size === 0) finishOverlap();
      else overlap = setTimeout(() => finishOverlap(), OverlapTimeout);
      if (resumeFirst) this.subscriptionsChanged();
    });
    es.addEventListener("unrecovered", (e) => {
      const ev = e as MessageEvent;
      const d = JSON.parse(ev.data);
      remember(ev);
      byName.get(d.channel)?.gap("unrecovered", { offset: d.offset, epoch: d.epoch });
    });
    es.addEventListener("disconnect", (e) => {
      if (es !== this.es) return;
      const d = JSON.parse((e as MessageEvent).data);
      this.end(d.code, d.reason ?? "disconnected", connected, d.code === 4005);
    });
    es.onmessage = (e) => {
      remember(e);
      const m = JSON.parse(e.data);
      const sub = byName.get(m.channel);
      if (!sub || typeof m.offset !== "number") return;
      const p = { channel: m.channel, data: m.data, offset: m.offset };
      const c = catching.get(m.channel);
      if (c) c.held.push(p);
      else deliver(sub, p);
    };
    es.onerror = () => {
      if (es !== this.es) return;
      // Reconnection is the client's (with its backoff and fallback), not
      // EventSource's: it resumes from the same id either way.
      this.end(0, "sse: stream failed", connected || this.started);
    };
    if (old) {
      // The old stream keeps delivering (to the same subscriptions) until released.
      old.onerror = () => finishOverlap();
      old.addEventListener("disconnect", () => finishOverlap());
    }
  }

  private end(code: number, reason: string, opened: boolean, tokenExpired = false): void {
    if (this.ended) return;
    this.ended = true;
    this.finishOverlap?.(true);
    this.es?.close();
    this.es = null;
    this.ctx.closed({ code, reason, opened, tokenExpired, fatal: closeIsFatal(code) });
  }

  close(): void {
    this.ended = true;
    this.finishOverlap?.(true);
    this.es?.close();
    this.es = null;
  }

  subscriptionsChanged(): void {
    // Also before the stream started: a subscription made while it opens
    // must not wait for the next reconnect.
    if (this.ended) return;
    const now = this.ctx.subscriptions().slice(0, MaxStreamChannels);
    if (now.length === this.subs.length && now.every((s, i) => s === this.subs[i])) return;
    this.stream();
  }

  publish(channel: string, data: unknown, key: string): Promise<{ offset: number }> {
    return httpPublish(this.ctx, channel, data, key);
  }

  async refresh(_token: string): Promise<void> {
    // A stream's token is in its URL: open it again, resuming from the last id.
    if (!this.ended && this.es) this.stream();
  }
}
