// switchboard-client 0.1.0: the SharedWorker of the Switchboard browser SDK. Built from sdk/js by "npm run build"; do not edit.

// src/worker.ts
import { startSharedWorker } from "./switchboard.js";
startSharedWorker(globalThis);
