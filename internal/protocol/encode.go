package protocol

import (
	"encoding/json"
	"strconv"
)

// AppendPublication appends the push a subscriber receives for one
// publication: {"channel":C,"data":D,"offset":N}. channel must have passed
// ValidateChannel (so it needs no escaping) and data must be valid JSON.
func AppendPublication(dst []byte, channel string, data []byte, offset uint64) []byte {
	dst = append(dst, `{"channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	return append(dst, '}')
}

// AppendPushEvent appends a channel event that is not a publication, such as
// {"channel":C,"join":{...}}: kind names the event and body is its JSON
// object.
func AppendPushEvent(dst []byte, channel, kind string, body []byte) []byte {
	dst = append(dst, `{"channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","`...)
	dst = append(dst, kind...)
	dst = append(dst, `":`...)
	dst = append(dst, body...)
	return append(dst, '}')
}

// AppendResult appends a successful reply: {"id":N,"result":R}. result must
// be a JSON object; nil stands for {}.
func AppendResult(dst []byte, id int64, result []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"result":`...)
	if result == nil {
		result = []byte("{}")
	}
	dst = append(dst, result...)
	return append(dst, '}')
}

// AppendError appends a failed reply: {"id":N,"error":{...}}, or
// {"error":{...}} when hasID is false.
func AppendError(dst []byte, id int64, hasID bool, e *Error) []byte {
	dst = append(dst, '{')
	if hasID {
		dst = append(dst, `"id":`...)
		dst = strconv.AppendInt(dst, id, 10)
		dst = append(dst, ',')
	}
	dst = append(dst, `"error":`...)
	dst = AppendErrorObject(dst, e)
	return append(dst, '}')
}

// AppendErrorObject appends {"code":N,"message":"..."}.
func AppendErrorObject(dst []byte, e *Error) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	msg, _ := json.Marshal(e.Message) // a string always marshals
	dst = append(dst, msg...)
	if e.URL != "" {
		u, _ := json.Marshal(e.URL)
		dst = append(dst, `,"url":`...)
		dst = append(dst, u...)
	}
	return append(dst, '}')
}
