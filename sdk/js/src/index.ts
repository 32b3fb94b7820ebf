// switchboard-client: the browser SDK of Switchboard.

export { Switchboard, tokenExpiry } from "./client.js";
export type { SwitchboardOptions, StateEvent, ClientEvents, HistoryOptions, PublishOptions, ServerSubscribedEvent, ServerUnsubscribedEvent } from "./client.js";
export { Subscription } from "./subscription.js";
export type { SubscriptionHandlers, SubscriptionState } from "./subscription.js";
export { Backoff } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { Outbox, MemoryOutboxStore, IndexedDBOutboxStore, randomKey } from "./outbox.js";
export type { OutboxEntry, OutboxState, OutboxStore, StoredEntry } from "./outbox.js";
export { ServerError, DisconnectedError } from "./types.js";
export type { TransportName, ConnectionState, Publication, StreamPosition, Gap, GapReason, CloseInfo, ClientInfo } from "./types.js";
export type { Env } from "./transport.js";
// For the SharedWorker script (worker.ts) and its tests; not an API.
export { Hub } from "./hub.js";
export type { HubOptions, PortLike } from "./hub.js";
export { serverOf, startSharedWorker } from "./sharedworker.js";
export { applyDelta } from "./fossil.js";
export { Room } from "./room.js";
export type { RoomOptions, RoomEvents, RemoteTrack, RemoteParticipant } from "./room.js";
