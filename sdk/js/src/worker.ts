// switchboard-worker: the SharedWorker script of sharedConnection. Tabs
// start it as new SharedWorker(url, { name, type: "module" }) with a name
// that says which server and identity it connects for
// ("switchboard:<http url>:<identity key>"); every tab of that name shares
// the one Hub this script runs. Served by the server at
// /sdk/switchboard-worker.js.

import { Hub } from "./hub.js";

export { Hub } from "./hub.js";
export type { HubOptions, PortLike } from "./hub.js";

/** serverOf reads the server URL from a worker name; undefined if it is not one of ours. */
export function serverOf(name: string): string | undefined {
  const m = /^switchboard:(.+):[^:]+$/.exec(name);
  return m ? m[1] : undefined;
}

const g = globalThis as any;
if (typeof g.SharedWorkerGlobalScope === "function" && g instanceof g.SharedWorkerGlobalScope) {
  const url = serverOf(String(g.name ?? ""));
  if (url) {
    const hub = new Hub(url, { locks: g.navigator?.locks });
    g.addEventListener("connect", (ev: MessageEvent) => hub.connect(ev.ports[0]));
  }
}
