// The Server-Sent Events transport: one EventSource for every channel,
// resumed with the id of the last event (lastEventId), publishing over
// POST /publish. EventSource cannot change its channel list, so a change
// opens a new stream.

import type { Subscription } from "./subscription.js";
import { httpPublish } from "./transport.js";
import type { Transport, TransportContext } from "./transport.js";
import { closeIsFatal } from "./types.js";

/** MaxStreamChannels is the most channels one SSE stream or poll may carry. */
export const MaxStreamChannels = 16;

export class SSETransport implements Transport {
  readonly name = "sse" as const;
  private es: EventSource | null = null;
  private ended = false;
  private started = false; // the server answered (connected event) at least once
  private subs: Subscription[] = [];
  private listKey = "";

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
    this.es?.close();
    this.es = null;
    this.subs = this.ctx.subscriptions().slice(0, MaxStreamChannels);
    if (this.subs.length === 0) {
      // Nothing to stream: publish still works over HTTP.
      if (!this.started) {
        this.started = true;
        this.ctx.opened({});
      }
      return;
    }
    const ES = (this.ctx.env.EventSource ?? globalThis.EventSource)!;
    const q = new URLSearchParams();
    for (const s of this.subs) q.append("channel", s.channel);
    this.listKey = "sse " + this.subs.map((s) => s.channel).join(" ");
    const last = this.ctx.resume.get(this.listKey);
    if (last) q.set("lastEventId", last);
    const token = this.ctx.token();
    if (token) q.set("token", token);
    let es: EventSource;
    try {
      es = new ES(`${this.ctx.httpURL}/sse?${q}`);
    } catch (err) {
      setTimeout(() => this.end(0, `sse: ${String(err)}`, false));
      return;
    }
    this.es = es;
    const byName = new Map(this.subs.map((s) => [s.channel, s]));
    let connected = false;
    const remember = (e: MessageEvent) => {
      if (e.lastEventId) this.ctx.resume.set(this.listKey, e.lastEventId);
    };
    es.addEventListener("connected", (e) => {
      const ev = e as MessageEvent;
      const d = JSON.parse(ev.data);
      connected = true;
      remember(ev);
      if (!this.started) {
        this.started = true;
        this.ctx.opened({ client: d.client });
      }
      for (const c of d.channels ?? []) {
        const sub = byName.get(c.channel);
        if (sub) sub.subscribed({ offset: c.offset, epoch: c.epoch }, undefined);
      }
    });
    es.addEventListener("unrecovered", (e) => {
      const ev = e as MessageEvent;
      const d = JSON.parse(ev.data);
      remember(ev);
      byName.get(d.channel)?.gap("unrecovered", { offset: d.offset, epoch: d.epoch });
    });
    es.addEventListener("disconnect", (e) => {
      const d = JSON.parse((e as MessageEvent).data);
      this.end(d.code, d.reason ?? "disconnected", connected, d.code === 4005);
    });
    es.onmessage = (e) => {
      remember(e);
      const m = JSON.parse(e.data);
      const sub = byName.get(m.channel);
      if (sub && typeof m.offset === "number") sub.deliver({ channel: m.channel, data: m.data, offset: m.offset });
    };
    es.onerror = () => {
      if (es !== this.es) return;
      // Reconnection is the client's (with its backoff and fallback), not
      // EventSource's: it resumes from the same id either way.
      this.end(0, "sse: stream failed", connected || this.started);
    };
  }

  private end(code: number, reason: string, opened: boolean, tokenExpired = false): void {
    if (this.ended) return;
    this.ended = true;
    this.es?.close();
    this.es = null;
    this.ctx.closed({ code, reason, opened, tokenExpired, fatal: closeIsFatal(code) });
  }

  close(): void {
    this.ended = true;
    this.es?.close();
    this.es = null;
  }

  subscriptionsChanged(): void {
    if (this.ended || !this.started) return;
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
