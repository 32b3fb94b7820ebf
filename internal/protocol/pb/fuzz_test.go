package pb

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// FuzzDecodeBinaryCommand feeds arbitrary frames to the server's binary
// decoder: it must never panic, must fail only with a DecodeError, and
// what it accepts must survive a client's re-encoding unchanged.
func FuzzDecodeBinaryCommand(f *testing.F) {
	for _, c := range []protocol.Command{
		{ID: 1, HasID: true, Command: "subscribe", Channel: "news", Since: &protocol.StreamPosition{Offset: 3, Epoch: "E"}},
		{ID: 2, HasID: true, Command: "publish", Channel: "c", Data: json.RawMessage(`{"a":[1,2]}`), IdempotencyKey: "k"},
		{Command: "publish", Channel: "c", Data: protocol.BinaryData([]byte{0, 1, 2})},
		{ID: 3, HasID: true, Command: "history", Channel: "c", Limit: intp(5), Reverse: true},
		{ID: 4, HasID: true, Command: "rpc", Method: "m", Token: "t"},
	} {
		frame := AppendCommand(nil, &c)
		f.Add(frame)
		f.Add(frame[:len(frame)/2])
	}
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, err := DecodeCommand(frame)
		if err != nil {
			if _, ok := err.(*protocol.DecodeError); !ok {
				t.Fatalf("error %T %v is not a DecodeError", err, err)
			}
			return
		}
		if c.Command == "" || (c.Data != nil && !json.Valid(c.Data)) {
			t.Fatalf("accepted %+v", c)
		}
		c2, err := DecodeCommand(AppendCommand(nil, &c))
		if err != nil {
			t.Fatalf("re-encoded %+v fails: %v", c, err)
		}
		c3, err := DecodeCommand(AppendCommand(nil, &c2))
		if err != nil || !reflect.DeepEqual(c2, c3) {
			t.Fatalf("not stable:\n%+v\n%+v (%v)", c2, c3, err)
		}
	})
}

// FuzzAppendReply transcodes arbitrary server messages: the result must
// always decode, and for a JSON object say the same as the JSON.
func FuzzAppendReply(f *testing.F) {
	for _, s := range []string{
		`{"channel":"news","data":{"title":"Hello"},"offset":13}`,
		`{"channel":"b","data":{"$binary":"AAEC"},"offset":2}`,
		`{"id":5,"result":{"channel":"n","offset":16,"epoch":"E","recovered":true,"publications":[{"channel":"n","data":"a","offset":14}]}}`,
		`{"id":3,"error":{"code":422,"message":"bad"}}`,
		`{"error":{"code":400,"message":"bad request"}}`,
		`{"pong":{}}`,
		`{"channel":"chat","join":{"client":"n1-4"}}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 {
			return
		}
		r, err := DecodeReply(AppendReply(nil, msg))
		if err != nil {
			t.Fatalf("%s: %v", msg, err)
		}
		var want map[string]any
		if json.Unmarshal(msg, &want) != nil {
			return
		}
		var got map[string]any
		out := r.AppendJSON(nil)
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s became invalid JSON %s", msg, out)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s became %s", msg, out)
		}
	})
}
