// What the client gives a transport and gets back from it. A transport
// object lives for one connection attempt; the client makes a new one for
// the next attempt, and keeps the positions (in the subscriptions), which
// every transport starts from.

import type { Subscription } from "./subscription.js";
import type { CloseInfo, Publication, TransportName } from "./types.js";
import { DisconnectedError, ServerError } from "./types.js";
import { jsonBytes } from "./protobuf.js";

/** Env holds the platform constructors, replaceable for tests. */
export interface Env {
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
  fetch?: typeof fetch;
  /** locks replaces navigator.locks (sharedConnection). */
  locks?: { request(name: string, cb: () => Promise<void>): Promise<unknown> };
  /** BroadcastChannel and SharedWorker replace the globals (sharedConnection). */
  BroadcastChannel?: typeof BroadcastChannel;
  SharedWorker?: typeof SharedWorker;
}

/** TransportContext is the client side of a transport. */
export interface TransportContext {
  /** wsURL is the WebSocket endpoint (…/ws). */
  wsURL: string;
  /** httpURL is the server's base URL for /sse, /poll and /publish (no trailing slash). */
  httpURL: string;
  env: Env;
  /** pingInterval: how often the WebSocket transport checks the connection with a ping command, in ms (0: never). */
  pingInterval: number;
  /** protocol the WebSocket transport speaks: the JSON protocol or its binary form. */
  protocol: "json" | "protobuf";
  /** token is the current connection token, if any. */
  token(): string | undefined;
  /** subscriptions lists the live subscriptions, in subscribe order. */
  subscriptions(): Subscription[];
  /** opened: the transport got through; subscriptions follow. */
  opened(info: { client?: string; expires?: number }): void;
  /** identified: the server gave the connection (a new SSE stream) a client id. */
  identified(client: string): void;
  /** publication routes a push to its subscription. */
  publication(p: Publication): void;
  /** room routes a call room's push ({"room","event","data"}) to its Room. */
  room?(push: { room: string; event: string; data: unknown }): void;
  /**
   * serverSubscribed: the server subscribed the connection to a channel
   * (a subscribed push); returns the subscription to deliver it to, or
   * undefined to ignore it.
   */
  serverSubscribed?(channel: string, data: unknown): Subscription | undefined;
  /** serverUnsubscribed: the server ended the subscription (an unsubscribed push). */
  serverUnsubscribed?(sub: Subscription, code: number, reason: string): void;
  /** reset handles a reset push / unrecovered notice. */
  closed(info: CloseInfo): void;
}

/** Transport is one connection attempt over one way of reaching the server. */
export interface Transport {
  readonly name: TransportName;
  open(): void;
  /** close ends it without reporting `closed`. */
  close(): void;
  /** subscriptionsChanged: a subscription was added or removed. */
  subscriptionsChanged(): void;
  publish(channel: string, data: unknown, key: string): Promise<{ offset: number }>;
  /** request sends a command and resolves with its result (SSE and long polling: history, presence and presence_stats only, over HTTP). */
  request?(command: Record<string, unknown>): Promise<any>;
  /** refresh hands the transport a new token. */
  refresh(token: string): Promise<void>;
}

/**
 * sinceParams adds one `since` parameter per subscription (OFFSET:EPOCH,
 * or empty for one without a known position) to q, after its `channel`
 * parameters, and returns the positions sent.
 */
export function sinceParams(q: URLSearchParams, subs: Subscription[]): Array<{ offset: number; epoch: string } | undefined> {
  const since = subs.map((s) => s.since());
  if (since.some((p) => p !== undefined)) {
    for (const p of since) q.append("since", p ? `${p.offset}:${p.epoch}` : "");
  }
  return since;
}

/** httpPublish is POST /publish, for the SSE and long-polling transports. */
export async function httpPublish(
  ctx: TransportContext,
  channel: string,
  data: unknown,
  key: string,
  signal?: AbortSignal,
): Promise<{ offset: number }> {
  const f = ctx.env.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  const token = ctx.token();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let resp: Response;
  try {
    resp = await f(`${ctx.httpURL}/publish`, {
      method: "POST",
      headers,
      body: JSON.stringify({ channel, data, idempotency_key: key }, jsonBytes),
      signal,
    });
  } catch (err) {
    throw new ServerError(503, `publish failed: ${String(err)}`);
  }
  return answer(resp);
}

/** ReadCommands are the commands the HTTP transports send as GET /<command>. */
const ReadCommands = new Set(["history", "presence", "presence_stats"]);

/**
 * httpRead sends a read command (history, presence, presence_stats) as
 * GET /history, /presence or /presence_stats, for the SSE and
 * long-polling transports, and resolves with the same result as over
 * WebSocket.
 */
export async function httpRead(ctx: TransportContext, cmd: Record<string, unknown>): Promise<any> {
  const name = String(cmd.command);
  if (!ReadCommands.has(name)) throw new Error(`switchboard: ${name} needs the websocket transport`);
  const q = new URLSearchParams();
  q.set("channel", String(cmd.channel));
  if (name === "history") {
    if (cmd.limit !== undefined) q.set("limit", String(cmd.limit));
    if (cmd.reverse) q.set("reverse", "true");
    const since = cmd.since as { offset: number; epoch: string } | undefined;
    if (since) q.set("since", `${since.offset}:${since.epoch}`);
  }
  const f = ctx.env.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = {};
  const token = ctx.token();
  if (token) headers["Authorization"] = `Bearer ${token}`;
  let resp: Response;
  try {
    resp = await f(`${ctx.httpURL}/${name}?${q}`, { headers, cache: "no-store" });
  } catch (err) {
    throw new DisconnectedError(`switchboard: ${name} failed: ${String(err)}`);
  }
  return answer(resp);
}

/** answer reads a JSON answer of the HTTP transports: {"result":...} or {"error":...}. */
export async function answer(resp: Response): Promise<any> {
  let body: any = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: judged by the status below
  }
  if (resp.ok && body && "result" in body) return body.result;
  if (resp.ok && body && !("error" in body)) return body;
  const code = body?.error?.code ?? (resp.status >= 500 ? 503 : resp.status);
  throw new ServerError(code, body?.error?.message ?? `HTTP ${resp.status}`);
}
