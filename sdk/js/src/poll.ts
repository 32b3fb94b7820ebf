// The long-polling transport: GET /poll again and again, each poll
// starting every channel from its subscription's position (the `since`
// parameter), so a lost answer, a new channel list or a change of
// transport costs nothing. A poll carries at most MaxStreamChannels
// channels, so more subscriptions poll in parallel. Publishing goes over
// POST /publish.

import type { Subscription } from "./subscription.js";
import { chunks } from "./sse.js";
import { ServerError } from "./types.js";
import { answer, httpPublish, httpRead, sinceParams } from "./transport.js";
import type { Transport, TransportContext } from "./transport.js";

/** PollTimeout is how long one poll waits on the server, in seconds. */
export const PollTimeout = 25;

/** Worker polls one group of channels (the k-th chunk of the subscriptions). */
interface Worker {
  abort: AbortController | null;
  changed: boolean;
}

export class PollTransport implements Transport {
  readonly name = "poll" as const;
  private ended = false;
  private started = false;
  private workers = new Map<number, Worker>();
  private idle: (() => void) | null = null;

  constructor(private ctx: TransportContext) {}

  open(): void {
    const f = this.ctx.env.fetch ?? globalThis.fetch;
    if (!f) {
      setTimeout(() => this.end(0, "poll: no fetch"));
      return;
    }
    this.sync();
  }

  close(): void {
    this.ended = true;
    for (const w of this.workers.values()) w.abort?.abort();
    this.idle?.();
  }

  private end(code: number, reason: string, tokenExpired = false, fatal = false): void {
    if (this.ended) return;
    this.close();
    this.ctx.closed({ code, reason, opened: this.started, tokenExpired, fatal });
  }

  /** sync starts a worker per group of channels (worker 0 also waits while there are none). */
  private sync(): void {
    if (this.ended) return;
    const n = Math.max(1, chunks(this.ctx.subscriptions()).length);
    for (let k = 0; k < n; k++) {
      if (this.workers.has(k)) continue;
      const w: Worker = { abort: null, changed: false };
      this.workers.set(k, w);
      void this.loop(k, w);
    }
  }

  private async loop(k: number, w: Worker): Promise<void> {
    const f = this.ctx.env.fetch ?? globalThis.fetch;
    while (!this.ended) {
      const subs = chunks(this.ctx.subscriptions())[k] ?? [];
      w.changed = false;
      if (subs.length === 0) {
        if (k > 0) {
          this.workers.delete(k);
          return;
        }
        if (!this.started) {
          this.started = true;
          this.ctx.opened({});
        }
        await new Promise<void>((r) => (this.idle = r));
        this.idle = null;
        continue;
      }
      const q = new URLSearchParams();
      for (const s of subs) q.append("channel", s.channel);
      const since = sinceParams(q, subs);
      // The first poll, and one for a subscription without a position,
      // does not wait: it confirms the connection and the subscriptions,
      // and gives every channel's position, at once.
      const wait = this.started && subs.every((s, i) => since[i] !== undefined && s.state === "subscribed");
      q.set("timeout", wait ? String(PollTimeout) : "0");
      const headers: Record<string, string> = {};
      const token = this.ctx.token();
      if (token) headers["Authorization"] = `Bearer ${token}`;
      const abort = new AbortController();
      w.abort = abort;
      let result: any;
      try {
        const resp = await f(`${this.ctx.httpURL}/poll?${q}`, { headers, signal: abort.signal, cache: "no-store" });
        result = await answer(resp);
      } catch (err) {
        if (this.ended) return;
        if (w.changed) continue; // aborted for a new channel list
        if (err instanceof ServerError) {
          if (err.code === 419) return this.end(4005, err.message, true);
          if (err.code === 401) return this.end(4502, err.message, false, true);
          if (err.code === 503) return this.end(0, err.message);
          // 403, 422, 429 (more channels than the server allows per poll):
          // these subscriptions are refused; the others go on.
          for (const s of subs) s.failed(err);
          continue;
        }
        return this.end(0, `poll: ${String(err)}`);
      }
      if (this.ended) return;
      if (w.changed) continue; // the list changed meanwhile: poll again from the positions
      const byName = new Map<string, Subscription>(subs.map((s) => [s.channel, s]));
      const positions = new Map<string, { offset: number; epoch: string }>();
      for (const c of result.channels ?? []) positions.set(c.channel, { offset: c.offset, epoch: c.epoch });
      const lost = new Set<string>(result.unrecovered ?? []);
      for (const ch of lost) {
        const s = byName.get(ch);
        const p = positions.get(ch);
        const pos = p ? { offset: p.offset, epoch: p.epoch } : { offset: null };
        if (s?.state === "subscribing") s.subscribed(pos, false);
        else s?.gap("unrecovered", pos);
      }
      // A subscription that sent its position starts there (no gap).
      subs.forEach((s, i) => {
        if (s.state === "subscribing" && since[i] && !lost.has(s.channel)) s.subscribed({ ...since[i]! }, undefined);
      });
      if (!this.started) {
        this.started = true;
        this.ctx.opened({});
      }
      for (const m of result.messages ?? []) {
        const s = byName.get(m.channel);
        if (s && typeof m.offset === "number") s.deliver({ channel: m.channel, data: m.data, offset: m.offset });
      }
      // The answer's positions: where a new subscription starts, and the
      // epoch of what was delivered.
      for (const s of subs) {
        const p = positions.get(s.channel);
        if (!p) continue;
        if (s.state === "subscribing") s.subscribed({ ...p }, undefined);
        else if (s.position && s.position.offset === p.offset) s.position.epoch = p.epoch;
      }
    }
  }

  subscriptionsChanged(): void {
    for (const w of this.workers.values()) {
      w.changed = true;
      w.abort?.abort();
    }
    this.idle?.();
    this.sync();
  }

  publish(channel: string, data: unknown, key: string): Promise<{ offset: number }> {
    return httpPublish(this.ctx, channel, data, key);
  }

  request(command: Record<string, unknown>): Promise<any> {
    return httpRead(this.ctx, command);
  }

  async refresh(_token: string): Promise<void> {
    // Every poll sends the current token.
  }
}
