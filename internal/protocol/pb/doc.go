// Package pb is the binary form of the client protocol: Protocol Buffers
// messages (schema in switchboard.proto) carrying the same commands,
// replies and pushes as the JSON protocol, for WebSocket clients that
// negotiate the subprotocol "switchboard.v1.protobuf".
//
// The codec is written by hand over protowire rather than generated: the
// server never holds these messages as Go values. A client command decodes
// straight into a protocol.Command, and a server message, which the engine
// builds once as JSON and shares between subscribers, is transcoded from
// that JSON into the binary form (AppendReply), once per publication. The
// publication push, the hot path, is transcoded without parsing its data.
package pb

// Subprotocol is the WebSocket subprotocol that selects this encoding.
const Subprotocol = "switchboard.v1.protobuf"
