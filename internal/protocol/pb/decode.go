package pb

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Reply is a decoded server message (the Reply message), for clients
// written in Go and for tests. Exactly one of its parts is set: Result
// (with Publications, for a successful reply), Error, Publication, Event,
// Pong or JSON.
type Reply struct {
	// ID correlates a reply with its command; valid when HasID is true.
	ID    int64
	HasID bool
	// Result is a successful reply's JSON result, without publications.
	Result json.RawMessage
	// Error is a failed reply's error.
	Error *protocol.Error
	// Publications are the result's publications, in order.
	Publications []Publication
	// Publication is a pushed publication.
	Publication *Publication
	// Event is a pushed channel event.
	Event *Event
	// Pong is the answer to a ping without id.
	Pong bool
	// JSON is a message that had no other binary form.
	JSON json.RawMessage
}

// Publication is one publication; Binary tells which of Data (JSON text)
// and Raw (bytes) holds its data.
type Publication struct {
	Channel string
	Offset  uint64
	Data    json.RawMessage
	Raw     []byte
	Binary  bool
}

// Event is a channel event: {"channel":Channel,Kind:Body} in JSON.
type Event struct {
	Channel, Kind string
	Body          json.RawMessage
}

// ErrMalformed is returned by DecodeReply for a frame that is not a valid
// Reply message.
var ErrMalformed = errors.New("pb: malformed message")

// field is one field of a message being walked.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// walk calls f for each field of msg, failing on malformed protobuf.
func walk(msg []byte, f func(field) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return fmt.Errorf("%w: %v", ErrMalformed, protowire.ParseError(n))
		}
		msg = msg[n:]
		fl := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			fl.v, n = protowire.ConsumeVarint(msg)
		case protowire.BytesType:
			fl.b, n = protowire.ConsumeBytes(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		msg = msg[n:]
		if err := f(fl); err != nil {
			return err
		}
	}
	return nil
}

// want checks a known field's wire type.
func (f field) want(typ protowire.Type) error {
	if f.typ != typ {
		return fmt.Errorf("%w: field %d has the wrong wire type", ErrMalformed, f.num)
	}
	return nil
}

// str returns a bytes field as a string, checking that it is UTF-8.
func (f field) str() (string, error) {
	if err := f.want(protowire.BytesType); err != nil {
		return "", err
	}
	if !utf8.Valid(f.b) {
		return "", fmt.Errorf("%w: field %d is not UTF-8", ErrMalformed, f.num)
	}
	return string(f.b), nil
}

// DecodeReply parses a binary server message. It fails with ErrMalformed
// when the frame is not a valid Reply.
func DecodeReply(frame []byte) (Reply, error) {
	var r Reply
	err := walk(frame, func(f field) error {
		var err error
		switch f.num {
		case replyID:
			err = f.want(protowire.VarintType)
			r.ID, r.HasID = int64(f.v), true
		case replyResult:
			err = f.want(protowire.BytesType)
			r.Result = append(json.RawMessage{}, f.b...)
		case replyError:
			if err = f.want(protowire.BytesType); err == nil {
				r.Error, err = decodeError(f.b)
			}
		case replyPublications, replyPublication:
			var p Publication
			if err = f.want(protowire.BytesType); err == nil {
				p, err = decodePublication(f.b)
			}
			if f.num == replyPublication {
				r.Publication = &p
			} else {
				r.Publications = append(r.Publications, p)
			}
		case replyEvent:
			if err = f.want(protowire.BytesType); err == nil {
				r.Event, err = decodeEvent(f.b)
			}
		case replyPong:
			err = f.want(protowire.VarintType)
			r.Pong = f.v != 0
		case replyJSON:
			err = f.want(protowire.BytesType)
			r.JSON = append(json.RawMessage{}, f.b...)
		}
		return err
	})
	return r, err
}

func decodeError(b []byte) (*protocol.Error, error) {
	e := &protocol.Error{}
	err := walk(b, func(f field) error {
		var err error
		switch f.num {
		case errCode:
			err = f.want(protowire.VarintType)
			e.Code = int(int32(f.v))
		case errMessage:
			e.Message, err = f.str()
		case errURL:
			e.URL, err = f.str()
		}
		return err
	})
	return e, err
}

func decodePublication(b []byte) (Publication, error) {
	var p Publication
	err := walk(b, func(f field) error {
		var err error
		switch f.num {
		case pubChannel:
			p.Channel, err = f.str()
		case pubOffset:
			err = f.want(protowire.VarintType)
			p.Offset = f.v
		case pubData:
			err = f.want(protowire.BytesType)
			p.Data = append(json.RawMessage{}, f.b...)
		case pubBinary:
			err = f.want(protowire.BytesType)
			p.Raw, p.Binary = append([]byte{}, f.b...), true
		}
		return err
	})
	return p, err
}

func decodeEvent(b []byte) (*Event, error) {
	e := &Event{}
	err := walk(b, func(f field) error {
		var err error
		switch f.num {
		case evChannel:
			e.Channel, err = f.str()
		case evKind:
			e.Kind, err = f.str()
		case evBody:
			err = f.want(protowire.BytesType)
			e.Body = append(json.RawMessage{}, f.b...)
		}
		return err
	})
	return e, err
}

// AppendJSON appends the JSON protocol's form of r: what a JSON client
// receives for the same message, binary data in its JSON form.
func (r *Reply) AppendJSON(dst []byte) []byte {
	switch {
	case r.JSON != nil:
		return append(dst, r.JSON...)
	case r.Pong:
		return append(dst, `{"pong":{}}`...)
	case r.Error != nil:
		return protocol.AppendError(dst, r.ID, r.HasID, r.Error)
	case r.Publication != nil:
		return r.Publication.AppendJSON(dst)
	case r.Event != nil:
		b, _ := json.Marshal(r.Event.Channel)
		dst = append(append(append(dst, `{"channel":`...), b...), ',')
		b, _ = json.Marshal(r.Event.Kind)
		return append(append(append(append(dst, b...), ':'), r.Event.Body...), '}')
	}
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendInt(dst, r.ID, 10)
	dst = append(dst, `,"result":`...)
	res := r.Result
	if len(res) == 0 {
		res = []byte("{}")
	}
	if r.Publications == nil {
		return append(append(dst, res...), '}')
	}
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(res, &fields)
	if fields == nil {
		fields = map[string]json.RawMessage{}
	}
	list := make([]json.RawMessage, 0, len(r.Publications))
	for i := range r.Publications {
		list = append(list, r.Publications[i].AppendJSON(nil))
	}
	fields["publications"], _ = json.Marshal(list)
	b, _ := json.Marshal(fields)
	return append(append(dst, b...), '}')
}

// AppendJSON appends the publication push in the JSON protocol's form.
func (p *Publication) AppendJSON(dst []byte) []byte {
	data := []byte(p.Data)
	if p.Binary {
		data = protocol.BinaryData(p.Raw)
	}
	b, _ := json.Marshal(p.Channel)
	dst = append(append(dst, `{"channel":`...), b...)
	dst = append(append(dst, `,"data":`...), data...)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, p.Offset, 10)
	return append(dst, '}')
}
