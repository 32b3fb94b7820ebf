// Types shared by the client, its subscriptions and its transports.

/** TransportName names a way to reach the server, best first. */
export type TransportName = "websocket" | "sse" | "poll";

/** ConnectionState is the client's connection state. */
export type ConnectionState = "connecting" | "connected" | "disconnected";

/** Publication is one message of a channel, delivered once and in order. */
export interface Publication {
  channel: string;
  data: unknown;
  /** offset grows by one per publication in the channel (within an epoch). */
  offset: number;
}

/** ClientInfo is a client in a channel's presence: a join or leave push, an entry of `presence()`. */
export interface ClientInfo {
  /** client is the connection's id. */
  client: string;
  /** user is the token's user id, absent for an anonymous client. */
  user?: string;
  /** transport the client uses: "websocket", "sse", "longpoll". */
  transport?: string;
  [field: string]: unknown;
}

/** Position is a place in a channel's stream. */
export interface StreamPosition {
  /** offset of the last publication held, or null when not known yet (long polling). */
  offset: number | null;
  /** epoch the offset belongs to, when known. */
  epoch?: string;
}

/**
 * GapReason says why publications may be missing:
 * - "unrecovered": the server could not send what was missed (history too short, epoch changed);
 * - "reset": the channel's history was lost while subscribed (a `reset` push);
 * - "skipped": an offset jumped without the server saying so (possible over long polling
 *   after a transport change, whose first answer carries no position).
 */
export type GapReason = "unrecovered" | "reset" | "skipped";

/** Gap tells a subscriber that its state of the channel is stale: reload it. */
export interface Gap {
  channel: string;
  reason: GapReason;
  /** offset the channel goes on from, when known. */
  offset?: number | null;
  epoch?: string;
}

/** ServerError is an error the server answered with ({"error":{"code","message"}}). */
export class ServerError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(`switchboard: ${code}: ${message}`);
    this.name = "ServerError";
    this.code = code;
  }
  /** temporary says whether retrying the same thing later may succeed. */
  get temporary(): boolean {
    return this.code === 503 || this.code === 429 || this.code === 500;
  }
}

/** DisconnectedError rejects requests cut short by a lost connection. */
export class DisconnectedError extends Error {
  constructor(message = "switchboard: disconnected") {
    super(message);
    this.name = "DisconnectedError";
  }
}

/** CloseInfo describes why a transport ended. */
export interface CloseInfo {
  /** code is the close code (WebSocket, SSE disconnect event) or 0 when the network failed. */
  code: number;
  reason: string;
  /** opened says whether the transport ever got through (connect answered, stream started). */
  opened: boolean;
  /** tokenExpired: get a new token before reconnecting (4005, HTTP 419). */
  tokenExpired?: boolean;
  /** fatal: do not reconnect without a change (4500-4999, HTTP 401/403 on connect). */
  fatal?: boolean;
}

/** closeIsFatal applies the close code table of docs/protocol.md: 4500-4999 do not reconnect. */
export function closeIsFatal(code: number): boolean {
  return code >= 4500 && code <= 4999;
}
