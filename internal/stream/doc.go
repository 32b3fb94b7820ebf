// Package stream is the core of live streaming: a Registry of live streams
// named by path ("live/NAME"), each with at most one publisher (an ingest:
// RTMP, WHIP) and any number of readers (outputs: LL-HLS, WHEP, recording).
//
// A publisher describes its tracks once (Track: codec, clock rate and
// decoder configuration) and then writes codec-level access units (Unit:
// an H.264 access unit as NAL units, an AAC frame, an Opus packet, a VP8
// frame...) with timestamps in the track's clock rate. The registry copies
// the pointer of each unit into every reader's own bounded queue: writing
// never blocks, and a reader that falls behind loses units (it is told how
// many, and it resumes at the next video keyframe so that decoding stays
// correct) without slowing the publisher or the other readers.
//
// Units are shared between readers and must be treated as read-only by
// everyone once written.
//
// Authorizer decides who may publish and read: the server API key, a stream
// key minted by the server API (HMAC-signed, with an expiry, bound to one
// path) or a JWT connection token with the grants "stream:publish",
// "stream:read" (every path), "stream:publish:PATH", "stream:read:PATH"
// (one path) or "stream:*". Reading is open or needs a credential per
// namespace (the first path segment), as configured.
//
// The subpackages are the ingests and outputs built on this core.
package stream
