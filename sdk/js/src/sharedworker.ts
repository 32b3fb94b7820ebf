// The SharedWorker side of sharedConnection: the worker script
// (switchboard-worker.js, see worker.ts) imports this module from the SDK
// bundle and starts it, so the worker runs the SDK's own code instead of a
// second copy of it.

import { Hub } from "./hub.js";

/** serverOf reads the server URL from a worker name; undefined if it is not one of ours. @internal */
export function serverOf(name: string): string | undefined {
  const m = /^switchboard:(.+):[^:]+$/.exec(name);
  return m ? m[1] : undefined;
}

/**
 * startSharedWorker runs the shared connection in a SharedWorker whose name
 * says which server and identity it connects for
 * ("switchboard:<http url>:<identity key>"): every tab of that name shares
 * the one Hub it starts. Elsewhere it does nothing. @internal
 */
export function startSharedWorker(g: any): void {
  if (typeof g.SharedWorkerGlobalScope !== "function" || !(g instanceof g.SharedWorkerGlobalScope)) return;
  const url = serverOf(String(g.name ?? ""));
  if (!url) return;
  const hub = new Hub(url, { locks: g.navigator?.locks });
  g.addEventListener("connect", (ev: MessageEvent) => hub.connect(ev.ports[0]));
}
