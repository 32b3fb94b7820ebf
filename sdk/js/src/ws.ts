// The WebSocket transport: connect, subscribe every channel with `since`,
// commands with ids, pushes routed to their subscriptions.

import { applyTextDelta } from "./fossil.js";
import type { Subscription } from "./subscription.js";
import type { Transport, TransportContext } from "./transport.js";
import { DisconnectedError, ServerError, closeIsFatal } from "./types.js";
import { SUBPROTOCOL, decodeReply, encodeCommand, jsonBytes } from "./protobuf.js";

interface Pending {
  resolve: (v: any) => void;
  reject: (e: Error) => void;
}

export class WebSocketTransport implements Transport {
  readonly name = "websocket" as const;
  private ws: WebSocket | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private connected = false;
  private ended = false;
  /** subscribed: channels the server has (or is being asked for) on this connection. */
  private subscribed = new Map<string, Subscription>();
  /**
   * deltas: the delta subscriptions of this connection, each with the
   * text of the last publication the server sent on it (undefined before
   * the first), which the next delta applies to. A new connection starts
   * empty: the server sends the first publication of a subscribe whole.
   */
  private deltas = new Map<string, string | undefined>();
  private pinger: ReturnType<typeof setInterval> | undefined;

  /** binary: the binary protocol (ctx.protocol "protobuf"). */
  private readonly binary: boolean;

  constructor(private ctx: TransportContext) {
    this.binary = ctx.protocol === "protobuf";
  }

  open(): void {
    const WS = this.ctx.env.WebSocket ?? globalThis.WebSocket;
    let ws: WebSocket;
    try {
      if (!WS) throw new Error("no WebSocket");
      ws = this.binary ? new WS(this.ctx.wsURL, [SUBPROTOCOL]) : new WS(this.ctx.wsURL);
      if (this.binary) ws.binaryType = "arraybuffer";
    } catch (err) {
      // Reported asynchronously, like any other failure to open.
      setTimeout(() => this.end({ code: 0, reason: `websocket: ${String(err)}`, opened: false }));
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.onOpen();
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onclose = (e) => {
      const code = e.code === 1005 || e.code === 1006 ? 0 : e.code;
      this.end({
        code,
        reason: e.reason || "connection closed",
        opened: this.connected,
        tokenExpired: e.code === 4005,
        fatal: closeIsFatal(e.code),
      });
    };
    ws.onerror = () => {
      // onclose follows and reports it.
    };
  }

  close(): void {
    this.ended = true;
    this.rejectAll();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
  }

  private end(info: Parameters<TransportContext["closed"]>[0]): void {
    if (this.ended) return;
    this.ended = true;
    this.rejectAll();
    if (this.ws) this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    this.ws = null;
    this.ctx.closed(info);
  }

  /**
   * startPinging checks the connection now and then: a browser does not
   * show the server's WebSocket pings, and a connection whose network
   * silently died can otherwise stay "open" for minutes. No answer within
   * the interval closes it (and the client reconnects and recovers).
   */
  private startPinging(): void {
    const every = this.ctx.pingInterval;
    if (!(every > 0)) return;
    this.pinger = setInterval(() => {
      let answered = false;
      this.request({ command: "ping" }).then(
        () => (answered = true),
        () => (answered = true),
      );
      setTimeout(() => {
        if (answered || this.ended) return;
        try {
          this.ws?.close(4000);
        } catch {
          // already closing
        }
        this.end({ code: 0, reason: "no answer to ping", opened: true });
      }, every);
    }, every);
  }

  private rejectAll(): void {
    clearInterval(this.pinger);
    const err = new DisconnectedError();
    for (const [, p] of this.pending) p.reject(err);
    this.pending.clear();
  }

  /** request sends a command with an id and resolves with its result. */
  request(command: Record<string, unknown>): Promise<any> {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return Promise.reject(new DisconnectedError());
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        const cmd = { ...command, id };
        ws.send(this.binary ? encodeCommand(cmd) : JSON.stringify(cmd, jsonBytes));
      } catch (err) {
        this.pending.delete(id);
        reject(new DisconnectedError(String(err)));
      }
    });
  }

  private async onOpen(): Promise<void> {
    // A connect that gets no answer (a server that accepts but does not
    // serve) fails the attempt, like one that does not open.
    const every = this.ctx.pingInterval;
    const timer =
      every > 0
        ? setTimeout(() => {
            if (this.connected || this.ended) return;
            try {
              this.ws?.close(4000);
            } catch {
              // already closing
            }
            this.end({ code: 0, reason: "no answer to connect", opened: false });
          }, every)
        : undefined;
    try {
      const token = this.ctx.token();
      const res = await this.request(token ? { command: "connect", token } : { command: "connect" });
      clearTimeout(timer);
      this.connected = true;
      this.ctx.opened({ client: res?.client, expires: res?.expires });
      this.subscriptionsChanged();
      this.startPinging();
    } catch (err) {
      if (this.ended) return;
      // The server closes after a failed connect (4005 or 4502); if it
      // does not, close it ourselves.
      const code = err instanceof ServerError ? err.code : 0;
      if (code === 419 || code === 401 || code === 403) {
        this.ws?.close(4000);
        this.end({ code: code === 419 ? 4005 : 4502, reason: String(err), opened: false, tokenExpired: code === 419, fatal: code !== 419 });
      }
    }
  }

  subscriptionsChanged(): void {
    if (!this.connected || this.ended) return;
    const want = new Map(this.ctx.subscriptions().map((s) => [s.channel, s]));
    for (const [ch, sub] of this.subscribed) {
      if (want.get(ch) !== sub) {
        this.subscribed.delete(ch);
        this.deltas.delete(ch);
        this.request({ command: "unsubscribe", channel: ch }).catch(() => {});
      }
    }
    for (const [ch, sub] of want) {
      if (this.subscribed.get(ch) === sub) continue;
      this.subscribed.set(ch, sub);
      void this.subscribe(sub);
    }
  }

  private async subscribe(sub: Subscription): Promise<void> {
    const since = sub.since();
    const cmd: Record<string, unknown> = { command: "subscribe", channel: sub.channel };
    if (since) cmd.since = since;
    if (sub.delta) cmd.delta = sub.delta;
    try {
      const r = await this.request(cmd);
      if (this.subscribed.get(sub.channel) !== sub) return;
      let pubs = r.publications;
      this.deltas.delete(sub.channel);
      if (r.delta === true) {
        // The reply comes before any push of the channel; the recovered
        // publications in it are whole, their data a string.
        this.deltas.set(sub.channel, undefined);
        pubs = pubs?.map((p: any) => ({ ...p, data: this.deltaData(p) }));
        if (pubs?.some((p: any) => p.data === DeltaFailed)) return this.deltaFailed();
      }
      sub.subscribed({ offset: r.offset, epoch: r.epoch }, since ? r.recovered : undefined, pubs);
    } catch (err) {
      if (this.subscribed.get(sub.channel) !== sub) return;
      this.subscribed.delete(sub.channel);
      if (err instanceof ServerError && !err.temporary) {
        sub.failed(err);
      } else if (err instanceof ServerError && !this.ended) {
        // 503/429: try again a little later on this connection.
        setTimeout(() => this.subscriptionsChanged(), 1000);
      }
    }
  }

  /**
   * serverSubscribed handles a subscribed push: the client makes (or
   * finds) the subscription, which starts at the push's position, with
   * its recovered publications, like a subscribe result.
   */
  private serverSubscribed(channel: string, r: any): void {
    if (this.subscribed.has(channel)) return; // ours already
    const sub = this.ctx.serverSubscribed?.(channel, r.data);
    if (!sub) return;
    this.subscribed.set(channel, sub);
    const pubs = Array.isArray(r.publications) ? r.publications : undefined;
    sub.subscribed({ offset: r.offset, epoch: r.epoch }, typeof r.recovered === "boolean" ? r.recovered : undefined, pubs);
  }

  publish(channel: string, data: unknown, key: string): Promise<{ offset: number }> {
    return this.request({ command: "publish", channel, data, idempotency_key: key });
  }

  async refresh(token: string): Promise<void> {
    await this.request({ command: "refresh", token });
  }

  /**
   * deltaData turns a publication of a delta subscription into its data:
   * the string is the data's JSON text, or with `delta` the fossil delta
   * from the previous publication's text. It returns DeltaFailed when
   * that cannot be done (which the server never causes).
   */
  private deltaData(p: { channel: string; data: unknown; delta?: boolean }): unknown {
    const prev = this.deltas.get(p.channel);
    if (typeof p.data !== "string") {
      // Not prepared for delta subscribers: taken as it is.
      this.deltas.set(p.channel, undefined);
      return p.data;
    }
    try {
      const text = p.delta === true ? applyTextDelta(prev ?? fail(), p.data) : p.data;
      this.deltas.set(p.channel, text);
      return JSON.parse(text);
    } catch {
      return DeltaFailed;
    }
  }

  /**
   * deltaFailed drops the connection after a delta that did not apply:
   * the client reconnects and resubscribes from the last publication it
   * delivered, which the server then sends whole.
   */
  private deltaFailed(): void {
    try {
      this.ws?.close(4000);
    } catch {
      // already closing
    }
    this.end({ code: 0, reason: "a delta did not apply", opened: true });
  }

  private onMessage(raw: unknown): void {
    let msg: any;
    try {
      msg = raw instanceof ArrayBuffer ? decodeReply(new Uint8Array(raw)) : JSON.parse(String(raw));
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.id === "number") {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new ServerError(msg.error.code, msg.error.message));
      else p.resolve(msg.result);
      return;
    }
    if (typeof msg.room === "string" && typeof msg.event === "string") {
      this.ctx.room?.(msg);
      return;
    }
    if (typeof msg.channel !== "string") return;
    if (msg.subscribed && typeof msg.subscribed === "object") {
      this.serverSubscribed(msg.channel, msg.subscribed);
      return;
    }
    if (msg.unsubscribed && typeof msg.unsubscribed === "object") {
      const sub = this.subscribed.get(msg.channel);
      if (!sub) return;
      this.subscribed.delete(msg.channel);
      this.ctx.serverUnsubscribed?.(sub, Number(msg.unsubscribed.code) || 0, String(msg.unsubscribed.reason ?? ""));
      return;
    }
    const sub = this.subscribed.get(msg.channel);
    if (!sub || sub.state === "unsubscribed") return;
    if (typeof msg.offset === "number" && "data" in msg) {
      let data = msg.data;
      if (this.deltas.has(msg.channel)) {
        data = this.deltaData(msg);
        if (data === DeltaFailed) return this.deltaFailed();
      }
      sub.deliver({ channel: msg.channel, data, offset: msg.offset });
    } else if (msg.reset) {
      if (this.deltas.has(msg.channel)) this.deltas.set(msg.channel, undefined);
      sub.gap("reset", { offset: msg.reset.offset, epoch: msg.reset.epoch });
    } else if (msg.join) {
      sub.presenceEvent("join", msg.join);
    } else if (msg.leave) {
      sub.presenceEvent("leave", msg.leave);
    }
  }
}

/** DeltaFailed marks a publication whose delta could not be applied. */
const DeltaFailed = Symbol("delta failed");

function fail(): never {
  throw new Error("switchboard: a delta with no previous publication");
}
