// The long-polling transport: GET /poll with a cursor, again and again;
// the cursor carries every channel's position, so a lost answer costs
// nothing. Publishing goes over POST /publish.

import type { Subscription } from "./subscription.js";
import { MaxStreamChannels } from "./sse.js";
import { ServerError } from "./types.js";
import { answer, httpPublish } from "./transport.js";
import type { Transport, TransportContext } from "./transport.js";

/** PollTimeout is how long one poll waits on the server, in seconds. */
export const PollTimeout = 25;

export class PollTransport implements Transport {
  readonly name = "poll" as const;
  private ended = false;
  private started = false;
  private abort: AbortController | null = null;
  private changed = false;
  private idle: (() => void) | null = null;

  constructor(private ctx: TransportContext) {}

  open(): void {
    void this.loop();
  }

  close(): void {
    this.ended = true;
    this.abort?.abort();
    this.idle?.();
  }

  private end(code: number, reason: string, tokenExpired = false, fatal = false): void {
    if (this.ended) return;
    this.ended = true;
    this.abort?.abort();
    this.ctx.closed({ code, reason, opened: this.started, tokenExpired, fatal });
  }

  private async loop(): Promise<void> {
    const f = this.ctx.env.fetch ?? globalThis.fetch;
    if (!f) {
      setTimeout(() => this.end(0, "poll: no fetch"));
      return;
    }
    // The list of the last answered poll, also from an earlier connection:
    // a new list drains it (below).
    const lastKey = this.ctx.resume.get("poll list");
    let prev: { key: string } | null = lastKey ? { key: lastKey } : null;
    while (!this.ended) {
      const subs = this.ctx.subscriptions().slice(0, MaxStreamChannels);
      this.changed = false;
      if (subs.length === 0) {
        if (!this.started) {
          this.started = true;
          this.ctx.opened({});
        }
        await new Promise<void>((r) => (this.idle = r));
        this.idle = null;
        continue;
      }
      const key = "poll " + subs.map((s) => s.channel).join(" ");
      const cursor = this.ctx.resume.get(key);
      const q = new URLSearchParams();
      for (const s of subs) q.append("channel", s.channel);
      if (cursor) q.set("cursor", cursor);
      q.set("timeout", String(PollTimeout));
      const headers: Record<string, string> = {};
      const token = this.ctx.token();
      if (token) headers["Authorization"] = `Bearer ${token}`;
      const abort = new AbortController();
      this.abort = abort;
      let result: any;
      try {
        const resp = await f(`${this.ctx.httpURL}/poll?${q}`, { headers, signal: abort.signal, cache: "no-store" });
        result = await answer(resp);
      } catch (err) {
        if (this.ended) return;
        if (this.changed) continue; // aborted for a new channel list
        if (err instanceof ServerError) {
          if (err.code === 419) return this.end(4005, err.message, true);
          if (err.code === 401) return this.end(4502, err.message, false, true);
          if (err.code === 503) return this.end(0, err.message);
          if (err.code === 400 && cursor) {
            // A cursor this server cannot use: start again without it.
            this.ctx.resume.delete(key);
            continue;
          }
          for (const s of subs) s.failed(err);
          continue;
        }
        return this.end(0, `poll: ${String(err)}`);
      }
      if (this.ended) return;
      const byName = new Map<string, Subscription>(subs.map((s) => [s.channel, s]));
      for (const ch of result.unrecovered ?? []) byName.get(ch)?.gap("unrecovered", { offset: null });
      // A first poll answers at once with the current cursor and no
      // position: a subscription starts from what it holds (or from the
      // first publication that comes), and a jump is reported as a gap.
      for (const s of subs) {
        if (s.state === "subscribing") s.subscribed({ offset: s.position?.offset ?? null, epoch: s.position?.epoch }, undefined);
      }
      if (!this.started) {
        this.started = true;
        this.ctx.opened({});
      }
      for (const m of result.messages ?? []) {
        const s = byName.get(m.channel);
        if (s && typeof m.offset === "number") s.deliver({ channel: m.channel, data: m.data, offset: m.offset });
      }
      if (typeof result.cursor === "string") this.ctx.resume.set(key, result.cursor);
      if (!cursor && prev && prev.key !== key && this.ctx.resume.has(prev.key)) {
        // A new channel list starts from now: what the old list had not
        // brought yet comes from draining it (docs/protocol.md, "To change
        // the channel list"); repeats are dropped by offset.
        await this.drain(prev.key, headers);
      }
      prev = { key };
      this.ctx.resume.set("poll list", key);
    }
  }

  /** drain polls an old channel list with timeout=0 until it returns nothing. */
  private async drain(key: string, headers: Record<string, string>): Promise<void> {
    const f = this.ctx.env.fetch ?? globalThis.fetch;
    const names = key.slice(5).split(" ");
    const subs = this.ctx.subscriptions();
    for (let i = 0; i < 100 && !this.ended; i++) {
      const q = new URLSearchParams();
      for (const n of names) q.append("channel", n);
      q.set("cursor", this.ctx.resume.get(key) ?? "");
      q.set("timeout", "0");
      let result: any;
      try {
        result = await answer(await f(`${this.ctx.httpURL}/poll?${q}`, { headers, cache: "no-store" }));
      } catch {
        break; // what is missing shows as a jump in offsets: a "skipped" gap
      }
      for (const m of result.messages ?? []) {
        const s = subs.find((x) => x.channel === m.channel);
        if (s && typeof m.offset === "number") s.deliver({ channel: m.channel, data: m.data, offset: m.offset });
      }
      if (typeof result.cursor === "string") this.ctx.resume.set(key, result.cursor);
      if (!result.messages?.length || result.unrecovered?.length) break;
    }
    this.ctx.resume.delete(key);
  }

  subscriptionsChanged(): void {
    this.changed = true;
    this.abort?.abort();
    this.idle?.();
  }

  publish(channel: string, data: unknown, key: string): Promise<{ offset: number }> {
    return httpPublish(this.ctx, channel, data, key);
  }

  async refresh(_token: string): Promise<void> {
    // Every poll sends the current token.
  }
}
