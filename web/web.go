// Package web holds the demo pages, embedded into the binary so that
// "switchboard serve" needs no files beside it.
package web

import "embed"

// Static is the demo site; "static/index.html" is the chat room.
//
//go:embed static
var Static embed.FS
