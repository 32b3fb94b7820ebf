package pb

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func intp(n int) *int { return &n }

// TestCommandRoundTrip encodes each command as a client does and decodes
// it as the server does.
func TestCommandRoundTrip(t *testing.T) {
	tests := map[string]protocol.Command{
		"subscribe":          {ID: 1, HasID: true, Command: "subscribe", Channel: "news"},
		"subscribe recovery": {ID: 2, HasID: true, Command: "subscribe", Channel: "news", Since: &protocol.StreamPosition{Offset: 13, Epoch: "KZ3MA7QD"}},
		"subscribe since 0":  {ID: 2, HasID: true, Command: "subscribe", Channel: "news", Since: &protocol.StreamPosition{}},
		"unsubscribe":        {ID: 3, HasID: true, Command: "unsubscribe", Channel: "news"},
		"publish json":       {ID: 4, HasID: true, Command: "publish", Channel: "feed:a", Data: json.RawMessage(`{"price":101.5,"sym":"ACME"}`)},
		"publish null":       {ID: 4, HasID: true, Command: "publish", Channel: "feed:a", Data: json.RawMessage(`null`)},
		"publish binary":     {ID: 5, HasID: true, Command: "publish", Channel: "bin", Data: protocol.BinaryData([]byte{0, 1, 2, 0xff})},
		"publish empty bin":  {ID: 5, HasID: true, Command: "publish", Channel: "bin", Data: protocol.BinaryData(nil)},
		"publish key":        {ID: 6, HasID: true, Command: "publish", Channel: "c", Data: json.RawMessage(`1`), IdempotencyKey: "9f2c-41"},
		"ping no id":         {Command: "ping"},
		"negative id":        {ID: -7, HasID: true, Command: "ping"},
		"connect":            {ID: 8, HasID: true, Command: "connect", Token: "a.b.c", Data: json.RawMessage(`{"x":1}`)},
		"refresh":            {ID: 9, HasID: true, Command: "refresh", Token: "t"},
		"history":            {ID: 10, HasID: true, Command: "history", Channel: "news", Since: &protocol.StreamPosition{Offset: 4, Epoch: "E"}, Limit: intp(20), Reverse: true},
		"history limit 0":    {ID: 10, HasID: true, Command: "history", Channel: "news", Limit: intp(0)},
		"presence":           {ID: 11, HasID: true, Command: "presence", Channel: "chat"},
		"presence_stats":     {ID: 12, HasID: true, Command: "presence_stats", Channel: "chat"},
		"rpc":                {ID: 13, HasID: true, Command: "rpc", Method: "chat.history", Data: json.RawMessage(`{"room":"a"}`)},
		"room_join":          {ID: 14, HasID: true, Command: "room_join", Data: json.RawMessage(`{"room":"r1"}`)},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			frame := AppendCommand(nil, &want)
			got, err := DecodeCommand(frame)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestBinaryPublishIsBinaryField checks that binary data travels as bytes,
// not as base64 text.
func TestBinaryPublishIsBinaryField(t *testing.T) {
	raw := bytes.Repeat([]byte{0xde, 0xad}, 100)
	frame := AppendCommand(nil, &protocol.Command{Command: "publish", Channel: "c", Data: protocol.BinaryData(raw)})
	if len(frame) > len(raw)+20 {
		t.Fatalf("frame of %d bytes for %d bytes of data", len(frame), len(raw))
	}
	if !bytes.Contains(frame, raw) {
		t.Fatal("raw bytes not in the frame")
	}
}

// tag builds a field tag for hand-made frames.
func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func bytesField(num protowire.Number, s string) []byte {
	return protowire.AppendBytes(tag(num, protowire.BytesType), []byte(s))
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(tag(num, protowire.VarintType), v)
}

// TestDecodeCommandErrors checks that malformed frames get a 400 with the
// id when it could be read, and never a panic.
func TestDecodeCommandErrors(t *testing.T) {
	id := varintField(cmdID, 42)
	pub := bytesField(cmdCommand, "publish")
	tests := map[string]struct {
		frame  []byte
		code   int
		hasID  bool
		substr string
	}{
		"empty":             {nil, 400, false, `missing "command"`},
		"garbage":           {[]byte{0xff, 0xff, 0xff}, 400, false, "malformed"},
		"truncated bytes":   {cat(id, tag(cmdChannel, protowire.BytesType), []byte{10, 'a'}), 400, true, "malformed"},
		"wrong wire type":   {cat(id, varintField(cmdCommand, 1)), 400, true, "wrong wire type"},
		"bad utf8":          {cat(id, bytesField(cmdCommand, "\xff")), 400, true, "UTF-8"},
		"data not json":     {cat(id, pub, bytesField(cmdData, "{nope")), 400, true, "not valid JSON"},
		"data and binary":   {cat(id, pub, bytesField(cmdData, "1"), bytesField(cmdBinary, "x")), 400, true, "exclusive"},
		"no command":        {cat(id, bytesField(cmdChannel, "a")), 400, true, `missing "command"`},
		"empty key":         {cat(id, pub, bytesField(cmdKey, "")), 400, true, "idempotency"},
		"bad since":         {cat(id, pub, bytesField(cmdSince, "\x08")), 400, true, "since"},
		"since wrong type":  {cat(id, pub, bytesField(cmdSince, string(bytesField(posOffset, "x")))), 400, true, "since.offset"},
		"id after error":    {cat(varintField(cmdCommand, 1), id), 400, true, "wrong wire type"},
		"id after garbage":  {cat(tag(cmdCommand, protowire.BytesType), []byte{0x7f}, id), 400, false, "malformed"},
		"group wire type":   {cat(id, tag(20, protowire.StartGroupType)), 400, true, "malformed"},
		"limit overflowing": {cat(id, bytesField(cmdCommand, "history"), tag(cmdLimit, protowire.VarintType), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), 0, false, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeCommand(tc.frame)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var de *protocol.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DecodeError", err)
			}
			if de.Err.Code != tc.code || de.HasID != tc.hasID || (tc.hasID && de.ID != 42) {
				t.Fatalf("got code %d id %d/%v, want %d id 42/%v", de.Err.Code, de.ID, de.HasID, tc.code, tc.hasID)
			}
			if !bytes.Contains([]byte(de.Err.Message), []byte(tc.substr)) {
				t.Fatalf("message %q does not mention %q", de.Err.Message, tc.substr)
			}
		})
	}
}

// TestUnknownFieldsSkipped checks forward compatibility: fields a newer
// client adds are ignored.
func TestUnknownFieldsSkipped(t *testing.T) {
	frame := cat(varintField(cmdID, 1), bytesField(cmdCommand, "ping"), varintField(99, 5), bytesField(100, "x"), protowire.AppendFixed64(tag(101, protowire.Fixed64Type), 7))
	c, err := DecodeCommand(frame)
	if err != nil || c.Command != "ping" || c.ID != 1 {
		t.Fatalf("got %+v, %v", c, err)
	}
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestReplyRoundTrip transcodes each server message the engine writes to
// the binary form, decodes it as a client does, and checks that it says
// the same as the JSON.
func TestReplyRoundTrip(t *testing.T) {
	bin := string(protocol.BinaryData([]byte{1, 2, 3}))
	tests := map[string]struct {
		msg  string
		kind string // which part of Reply is set
	}{
		"publication":         {string(protocol.AppendPublication(nil, "news", []byte(`{"title":"Hello"}`), 13)), "publication"},
		"publication tricky":  {string(protocol.AppendPublication(nil, "n", []byte(`{"a":",\"offset\":9}"}`), 7)), "publication"},
		"publication binary":  {string(protocol.AppendPublication(nil, "bin", []byte(bin), 2)), "binary"},
		"publication spaced":  {`{"channel":"c", "data":{ "$binary" : "AQID" },"offset":3}`, "binary"},
		"subscribe result":    {`{"id":1,"result":{"channel":"news","offset":12,"epoch":"KZ3MA7QD"}}`, "result"},
		"empty result":        {`{"id":2,"result":{}}`, "result"},
		"recovery result":     {`{"id":5,"result":{"channel":"news","offset":16,"epoch":"E","recovered":true,"publications":[{"channel":"news","data":"a","offset":14},{"channel":"news","data":` + bin + `,"offset":15}]}}`, "publications"},
		"history empty":       {`{"id":6,"result":{"publications":[],"offset":0,"epoch":"E"}}`, "result"},
		"error with id":       {string(protocol.AppendError(nil, 3, true, protocol.ErrInvalidChannel.WithMessage("bad \"name\""))), "error"},
		"error without id":    {string(protocol.AppendError(nil, 0, false, protocol.ErrBadRequest)), "error"},
		"error with url":      {`{"id":4,"error":{"code":421,"message":"elsewhere","url":"ws://n2/ws"}}`, "error"},
		"pong":                {`{"pong":{}}`, "pong"},
		"join":                {`{"channel":"chat","join":{"client":"n1-4","transport":"websocket"}}`, "event"},
		"reset":               {string(protocol.AppendPushEvent(nil, "news", "reset", []byte(`{"offset":0,"epoch":"Q4ZC2M7A"}`))), "event"},
		"unknown shape":       {`{"channel":"c","data":1,"offset":2,"publisher":"x"}`, "json"},
		"unknown top":         {`{"disconnect":{"code":4001}}`, "json"},
		"error extra field":   {`{"id":1,"error":{"code":1,"message":"m","detail":2}}`, "json"},
		"negative id":         {`{"id":-3,"result":{"offset":1}}`, "result"},
		"escaped channel key": {`{"channel":"a\"b","data":1,"offset":1}`, "publication"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			frame := AppendReply(nil, []byte(tc.msg))
			r, err := DecodeReply(frame)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			var kind string
			switch {
			case r.JSON != nil:
				kind = "json"
			case r.Pong:
				kind = "pong"
			case r.Error != nil:
				kind = "error"
			case r.Publication != nil && r.Publication.Binary:
				kind = "binary"
			case r.Publication != nil:
				kind = "publication"
			case r.Event != nil:
				kind = "event"
			case r.Publications != nil:
				kind = "publications"
			default:
				kind = "result"
			}
			if kind != tc.kind {
				t.Fatalf("decoded as %s, want %s", kind, tc.kind)
			}
			jsonEqual(t, r.AppendJSON(nil), []byte(tc.msg))
		})
	}
}

// TestBinaryDataDelivered checks that binary data reaches a binary
// subscriber as its bytes.
func TestBinaryDataDelivered(t *testing.T) {
	raw := []byte{0, 0xff, 'x', 0x80}
	msg := protocol.AppendPublication(nil, "c", protocol.BinaryData(raw), 9)
	r, err := DecodeReply(AppendReply(nil, msg))
	if err != nil || r.Publication == nil || !r.Publication.Binary || !bytes.Equal(r.Publication.Raw, raw) || r.Publication.Offset != 9 {
		t.Fatalf("got %+v, %v", r.Publication, err)
	}
	// Not quite the binary form: stays JSON.
	for _, data := range []string{`{"$binary":"AQ"}`, `{"$binary":"AQI=","x":1}`, `{"$binary":1}`, `{"$binary":"AQ\u003d="}`, `["$binary"]`} {
		r, err := DecodeReply(AppendReply(nil, protocol.AppendPublication(nil, "c", []byte(data), 1)))
		if err != nil || r.Publication == nil || r.Publication.Binary || string(r.Publication.Data) != data {
			t.Fatalf("%s: got %+v, %v", data, r.Publication, err)
		}
	}
}

// TestDecodeReplyMalformed checks that a client's decoder refuses broken
// frames with ErrMalformed.
func TestDecodeReplyMalformed(t *testing.T) {
	for name, frame := range map[string][]byte{
		"garbage":     {0xff, 0xff},
		"wrong type":  varintField(replyResult, 1),
		"bad pub":     bytesField(replyPublication, "\x0a\x05ab"),
		"bad channel": bytesField(replyEvent, string(bytesField(evChannel, "\xff"))),
	} {
		if _, err := DecodeReply(frame); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}
