// The Server-Sent Events transport: EventSource streams that start every
// channel from the subscription's position (the `since` parameter of
// /sse), publishing over POST /publish. A stream carries at most
// MaxStreamChannels channels, so more subscriptions take more streams.
// EventSource cannot change its channel list: a change opens a new stream,
// again from the positions, and closes the old one.

import type { Subscription } from "./subscription.js";
import { httpPublish, httpRead, sinceParams } from "./transport.js";
import type { Transport, TransportContext } from "./transport.js";
import { closeIsFatal } from "./types.js";

/** MaxStreamChannels is the most channels one SSE stream or poll may carry (the server's limit). */
export const MaxStreamChannels = 16;

/** chunks splits subscriptions into groups of at most MaxStreamChannels, in order. */
export function chunks(subs: Subscription[]): Subscription[][] {
  const out: Subscription[][] = [];
  for (let i = 0; i < subs.length; i += MaxStreamChannels) out.push(subs.slice(i, i + MaxStreamChannels));
  return out;
}

/** Stream is one EventSource and the subscriptions it carries. */
interface Stream {
  es: EventSource;
  subs: Subscription[];
  connected: boolean;
}

export class SSETransport implements Transport {
  readonly name = "sse" as const;
  private ended = false;
  private started = false; // opened was reported
  private streams: Stream[] = [];

  constructor(private ctx: TransportContext) {}

  open(): void {
    const ES = this.ctx.env.EventSource ?? globalThis.EventSource;
    if (!ES) {
      setTimeout(() => this.end(0, "sse: no EventSource", false));
      return;
    }
    this.sync();
  }

  /** sync makes the streams match the subscriptions: a group whose list changed gets a new stream. */
  private sync(): void {
    if (this.ended) return;
    const groups = chunks(this.ctx.subscriptions());
    for (let i = 0; i < Math.max(groups.length, this.streams.length); i++) {
      const cur = this.streams[i];
      const want = groups[i];
      if (cur && want && cur.subs.length === want.length && cur.subs.every((s, j) => s === want[j])) continue;
      // The old stream stops before the new one starts from the positions
      // it delivered: nothing is lost, and whatever both carry is dropped
      // by offset.
      cur?.es.close();
      if (want) {
        const s = this.stream(want);
        if (!s) return;
        this.streams[i] = s;
      }
    }
    this.streams.length = groups.length;
    if (groups.length === 0 && !this.started) {
      // Nothing to stream: publish still works over HTTP.
      this.started = true;
      this.ctx.opened({});
    }
  }

  private stream(subs: Subscription[]): Stream | null {
    const ES = (this.ctx.env.EventSource ?? globalThis.EventSource)!;
    const q = new URLSearchParams();
    for (const s of subs) q.append("channel", s.channel);
    sinceParams(q, subs);
    const token = this.ctx.token();
    if (token) q.set("token", token);
    let es: EventSource;
    try {
      es = new ES(`${this.ctx.httpURL}/sse?${q}`);
    } catch (err) {
      setTimeout(() => this.end(0, `sse: ${String(err)}`, false));
      return null;
    }
    const st: Stream = { es, subs, connected: false };
    const byName = new Map(subs.map((s) => [s.channel, s]));
    const live = () => !this.ended && this.streams.includes(st);
    es.addEventListener("connected", (e) => {
      if (!live()) return;
      const d = JSON.parse((e as MessageEvent).data);
      st.connected = true;
      if (!this.started) {
        this.started = true;
        this.ctx.opened({ client: d.client });
      } else if (d.client && st === this.streams[0]) {
        this.ctx.identified(d.client);
      }
      // Each channel starts where we asked (our position: no gap), or
      // from now for a new subscription.
      for (const c of d.channels ?? []) byName.get(c.channel)?.subscribed({ offset: c.offset, epoch: c.epoch }, undefined);
    });
    es.addEventListener("unrecovered", (e) => {
      if (!live()) return;
      const d = JSON.parse((e as MessageEvent).data);
      byName.get(d.channel)?.gap("unrecovered", { offset: d.offset, epoch: d.epoch });
    });
    for (const kind of ["join", "leave"] as const) {
      es.addEventListener(kind, (e) => {
        if (!live()) return;
        const d = JSON.parse((e as MessageEvent).data);
        byName.get(d.channel)?.presenceEvent(kind, d[kind]);
      });
    }
    es.addEventListener("disconnect", (e) => {
      if (!live()) return;
      const d = JSON.parse((e as MessageEvent).data);
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
      // Reconnection is the client's (with its backoff and fallback), not
      // EventSource's: every stream starts again from the positions.
      this.end(0, "sse: stream failed", st.connected || this.started);
    };
    return st;
  }

  private end(code: number, reason: string, opened: boolean, tokenExpired = false): void {
    if (this.ended) return;
    this.close();
    this.ctx.closed({ code, reason, opened, tokenExpired, fatal: closeIsFatal(code) });
  }

  close(): void {
    this.ended = true;
    for (const s of this.streams) s.es.close();
    this.streams = [];
  }

  subscriptionsChanged(): void {
    // Also before the streams started: a subscription made while they
    // open must not wait for the next reconnect.
    this.sync();
  }

  publish(channel: string, data: unknown, key: string): Promise<{ offset: number }> {
    return httpPublish(this.ctx, channel, data, key);
  }

  request(command: Record<string, unknown>): Promise<any> {
    return httpRead(this.ctx, command);
  }

  async refresh(_token: string): Promise<void> {
    // A stream's token is in its URL: open them again, from the positions.
    if (this.ended) return;
    for (const s of this.streams) s.es.close();
    this.streams = [];
    this.sync();
  }
}
