package pb

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Field numbers of Reply, Error, Publication and Event (switchboard.proto).
const (
	replyID           = 1
	replyResult       = 2
	replyError        = 3
	replyPublications = 4
	replyPublication  = 5
	replyEvent        = 6
	replyPong         = 7
	replyJSON         = 15

	errCode    = 1
	errMessage = 2
	errURL     = 3

	pubChannel = 1
	pubOffset  = 2
	pubData    = 3
	pubBinary  = 4

	evChannel = 1
	evKind    = 2
	evBody    = 3
)

// AppendReply appends the binary form (a Reply message) of msg, a server
// message of the JSON protocol as the engine builds it: a reply, a push or
// a pong. A publication's data that is the JSON form of binary data
// ({"$binary":"<base64>"}) goes as bytes in the binary field. A message of
// a shape it does not know goes whole in the json field, so that nothing
// is lost when the JSON protocol grows.
func AppendReply(dst, msg []byte) []byte {
	if ch, data, off, ok := splitPublication(msg); ok {
		return appendPublication(dst, replyPublication, ch, off, data)
	}
	if out, ok := appendGeneric(dst, msg); ok {
		return out
	}
	dst = protowire.AppendTag(dst, replyJSON, protowire.BytesType)
	return protowire.AppendBytes(dst, msg)
}

// splitPublication takes apart a publication push in the exact form
// protocol.AppendPublication writes, {"channel":C,"data":D,"offset":N},
// without parsing D.
func splitPublication(msg []byte) (channel, data []byte, offset uint64, ok bool) {
	const head, mid, tail = `{"channel":"`, `","data":`, `,"offset":`
	if !bytes.HasPrefix(msg, []byte(head)) || msg[len(msg)-1] != '}' {
		return nil, nil, 0, false
	}
	rest := msg[len(head) : len(msg)-1]
	q := bytes.IndexByte(rest, '"')
	// The channel goes into a proto string field: it must be valid UTF-8
	// (the hub's always is; anything else takes the slower path).
	if q < 0 || bytes.IndexByte(rest[:q], '\\') >= 0 || !utf8.Valid(rest[:q]) || !bytes.HasPrefix(rest[q:], []byte(mid)) {
		return nil, nil, 0, false
	}
	channel, rest = rest[:q], rest[q+len(mid):]
	o := bytes.LastIndex(rest, []byte(tail))
	if o <= 0 {
		return nil, nil, 0, false
	}
	digits := rest[o+len(tail):]
	offset, err := strconv.ParseUint(string(digits), 10, 64)
	if err != nil || len(digits) == 0 || digits[0] == '+' {
		return nil, nil, 0, false
	}
	return channel, rest[:o], offset, true
}

// scratchPool holds buffers for decoded binary data.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendPublication appends a Publication message as field num.
func appendPublication(dst []byte, num protowire.Number, channel []byte, offset uint64, data []byte) []byte {
	payload, field := data, protowire.Number(pubData)
	var sp *[]byte
	if len(data) > 0 && data[0] == '{' && bytes.Contains(data, []byte(`"$binary"`)) {
		sp = scratchPool.Get().(*[]byte)
		if raw, ok := protocol.AppendDecodedBinary((*sp)[:0], data); ok {
			payload, field = raw, pubBinary
		}
	}
	size := protowire.SizeTag(pubChannel) + protowire.SizeBytes(len(channel)) +
		protowire.SizeTag(pubOffset) + protowire.SizeVarint(offset) +
		protowire.SizeTag(field) + protowire.SizeBytes(len(payload))
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	dst = protowire.AppendTag(dst, pubChannel, protowire.BytesType)
	dst = protowire.AppendBytes(dst, channel)
	dst = protowire.AppendTag(dst, pubOffset, protowire.VarintType)
	dst = protowire.AppendVarint(dst, offset)
	dst = protowire.AppendTag(dst, field, protowire.BytesType)
	dst = protowire.AppendBytes(dst, payload)
	if sp != nil && field == pubBinary && cap(payload) <= 64<<10 {
		*sp = payload[:0]
		scratchPool.Put(sp)
	}
	return dst
}

// appendGeneric transcodes a message other than the plain publication push
// by parsing it. It reports false for a shape it does not know.
func appendGeneric(dst, msg []byte) ([]byte, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil {
		return dst, false
	}
	id, hasID := m["id"]
	result, hasResult := m["result"]
	perr, hasError := m["error"]
	channel, hasChannel := m["channel"]
	switch {
	case len(m) == 1 && string(m["pong"]) == "{}":
		dst = protowire.AppendTag(dst, replyPong, protowire.VarintType)
		return protowire.AppendVarint(dst, 1), true
	case hasResult && hasID && len(m) == 2:
		return appendResult(dst, id, result)
	case hasError && len(m) == 1+b2i(hasID):
		return appendErrorReply(dst, id, hasID, perr)
	case hasChannel && len(m) == 3:
		ch, data, off, ok := pushFields(m)
		if !ok {
			return dst, false
		}
		return appendPublication(dst, replyPublication, ch, off, data), true
	case hasChannel && len(m) == 2:
		var ch string
		if string(channel) == "null" || json.Unmarshal(channel, &ch) != nil {
			return dst, false
		}
		for kind, body := range m {
			if kind == "channel" {
				continue
			}
			size := protowire.SizeTag(evChannel) + protowire.SizeBytes(len(ch)) +
				protowire.SizeTag(evKind) + protowire.SizeBytes(len(kind)) +
				protowire.SizeTag(evBody) + protowire.SizeBytes(len(body))
			dst = protowire.AppendTag(dst, replyEvent, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(size))
			dst = protowire.AppendTag(dst, evChannel, protowire.BytesType)
			dst = protowire.AppendString(dst, ch)
			dst = protowire.AppendTag(dst, evKind, protowire.BytesType)
			dst = protowire.AppendString(dst, kind)
			dst = protowire.AppendTag(dst, evBody, protowire.BytesType)
			dst = protowire.AppendBytes(dst, body)
		}
		return dst, true
	}
	return dst, false
}

// pushFields takes a publication push's members, which must be exactly
// channel (a string), data and offset (an unsigned integer).
func pushFields(m map[string]json.RawMessage) (channel, data []byte, offset uint64, ok bool) {
	var ch string
	if len(m) != 3 || m["data"] == nil || string(m["channel"]) == "null" || string(m["offset"]) == "null" || json.Unmarshal(m["channel"], &ch) != nil || json.Unmarshal(m["offset"], &offset) != nil {
		return nil, nil, 0, false
	}
	return []byte(ch), m["data"], offset, true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// appendID appends the id field from its JSON text.
func appendID(dst []byte, id json.RawMessage) ([]byte, bool) {
	n, err := strconv.ParseInt(string(id), 10, 64)
	if err != nil {
		return dst, false
	}
	dst = protowire.AppendTag(dst, replyID, protowire.VarintType)
	return protowire.AppendVarint(dst, uint64(n)), true
}

// appendResult appends a successful reply; a result's publications go in
// the publications field (an empty list stays in the result).
func appendResult(dst []byte, id, result json.RawMessage) ([]byte, bool) {
	start := len(dst)
	dst, ok := appendID(dst, id)
	if !ok {
		return dst[:start], false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(result, &fields) != nil {
		return dst[:start], false
	}
	pubs, hasPubs := fields["publications"]
	if !hasPubs {
		dst = protowire.AppendTag(dst, replyResult, protowire.BytesType)
		return protowire.AppendBytes(dst, result), true
	}
	var list []json.RawMessage
	if json.Unmarshal(pubs, &list) != nil {
		return dst[:start], false
	}
	if len(list) == 0 { // kept in the result: an empty repeated field is no field
		dst = protowire.AppendTag(dst, replyResult, protowire.BytesType)
		return protowire.AppendBytes(dst, result), true
	}
	delete(fields, "publications")
	rest, err := json.Marshal(fields)
	if err != nil {
		return dst[:start], false
	}
	dst = protowire.AppendTag(dst, replyResult, protowire.BytesType)
	dst = protowire.AppendBytes(dst, rest)
	for _, p := range list {
		ch, data, off, ok := splitPublication(p)
		if !ok {
			var fields map[string]json.RawMessage
			if json.Unmarshal(p, &fields) != nil || len(fields) != 3 {
				return dst[:start], false
			}
			if ch, data, off, ok = pushFields(fields); !ok {
				return dst[:start], false
			}
		}
		dst = appendPublication(dst, replyPublications, ch, off, data)
	}
	return dst, true
}

// appendErrorReply appends a failed reply.
func appendErrorReply(dst []byte, id json.RawMessage, hasID bool, perr json.RawMessage) ([]byte, bool) {
	start := len(dst)
	if hasID {
		var ok bool
		if dst, ok = appendID(dst, id); !ok {
			return dst[:start], false
		}
	}
	var e struct {
		Code    int32  `json:"code"`
		Message string `json:"message"`
		URL     string `json:"url"`
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(perr, &e) != nil || json.Unmarshal(perr, &fields) != nil {
		return dst[:start], false
	}
	// Only the shape protocol.AppendErrorObject writes; anything else
	// goes as JSON.
	_, hasURL := fields["url"]
	if fields["code"] == nil || fields["message"] == nil || len(fields) != 2+b2i(hasURL) || hasURL && e.URL == "" {
		return dst[:start], false
	}
	inner := protowire.AppendTag(nil, errCode, protowire.VarintType)
	inner = protowire.AppendVarint(inner, uint64(int64(e.Code)))
	inner = appendString(inner, errMessage, e.Message)
	inner = appendString(inner, errURL, e.URL)
	dst = protowire.AppendTag(dst, replyError, protowire.BytesType)
	return protowire.AppendBytes(dst, inner), true
}
