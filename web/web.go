// Package web holds the demo pages and the browser SDK, embedded into the
// binary so that "switchboard serve" needs no files beside it.
package web

import "embed"

// Static is the demo site; "static/index.html" is the chat room.
//
//go:embed static
var Static embed.FS

// SDK holds "sdk/switchboard.js", the bundle of the TypeScript SDK in
// sdk/js, and "sdk/switchboard-worker.js", the SharedWorker its tabs share
// a connection through, built by "npm run build" there and committed, so
// that the server builds without npm. "npm run check-bundle" (part of
// "make test") fails when either differs from a fresh build.
//
//go:embed sdk/switchboard.js sdk/switchboard-worker.js
var SDK embed.FS
