// switchboard-worker: the SharedWorker script of sharedConnection. Tabs
// start it as new SharedWorker(url, { name, type: "module" }); it imports
// the SDK bundle that sits beside it (the server serves both under /sdk/)
// and runs the shared connection from there, so the worker and the pages
// load one copy of the SDK's code.

// @ts-ignore: resolved at run time, beside this file (the build keeps the import)
import { startSharedWorker } from "./switchboard.js";

startSharedWorker(globalThis);
