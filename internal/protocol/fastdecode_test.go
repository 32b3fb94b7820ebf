package protocol

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeFastAgrees checks that the fast path of DecodeCommand decodes
// every frame it accepts exactly as encoding/json does.
func FuzzDecodeFastAgrees(f *testing.F) {
	for _, s := range []string{
		`{"command":"publish","channel":"news","id":2,"data":{"text":"hi","n":[1,2.5e3,{"x":null}]}}`,
		` {"id":-0,"command":"ping"} `, `{"command":"subscribe","channel":"a","limit":3,"reverse":true}`,
		`{"command":"connect","token":"a.b.c"}`, `{"data":"\u00e9\"","command":"publish"}`,
		`{"command":"ping","id":01}`, `{"command":"ping","id":1.0}`, `{"command":"ping","id":9223372036854775808}`,
		`{"command":"ping","command":"x"}`, `{"Command":"ping"}`, `{"command":"p\u0069ng"}`,
		`{"command":"publish","data":[1,}`, `{"command":"publish","data":null}`, `{"command":"publish","data":tru}`,
		`{"command":"ping"}x`, `{}`, `{"command":""}`, `{"reverse":false,"limit":-1,"command":"history"}`,
		`{"command":"publish","data":"a\\"b"}`, `{"command":"publish","data":{"a":"}"}}`, `{"id":1,}`,
		`{"command":"publish","channel":"c","data":1,"idempotency_key":"k-1"}`, `{"command":"publish","idempotency_key":""}`,
		`{"command":"publish","idempotency_key":"` + strings.Repeat("x", 65) + `"}`, `{"idempotency_key":"k"}`,
		`{"command":"publish","idempotency_key":"\u0041"}`, `{"command":"publish","idempotency_key":null}`,
		`{"command":"publish","idempotency_key":"a","idempotency_key":"b"}`,
		`{"id":4,"command":"rpc","method":"chat.history","data":{"n":10}}`, `{"command":"rpc","method":"a","method":"b"}`,
		`{"command":"rpc","method":"\u0061"}`, `{"command":"rpc","method":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		fast, hasCommand, ok := decodeFast(frame)
		if !ok {
			return
		}
		slow, err := decodeSlow(frame)
		if err != nil {
			if hasCommand && fast.Command != "" {
				t.Fatalf("%q: fast path accepted, encoding/json: %v", frame, err)
			}
			if !strings.Contains(err.Error(), `missing "command"`) {
				t.Fatalf("%q: fast path found no command, encoding/json: %v", frame, err)
			}
			return
		}
		if !hasCommand {
			t.Fatalf("%q: fast path found no command, encoding/json found %q", frame, slow.Command)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", frame, fast, slow)
		}
	})
}

// TestDecodeFastTakesTheUsualFrames makes sure the frames clients send every
// second do not fall back to encoding/json.
func TestDecodeFastTakesTheUsualFrames(t *testing.T) {
	for _, frame := range []string{
		`{"command":"publish","channel":"news","data":{"text":"h\u00e9llo \"x\"","n":[1,2]},"id":7}`,
		`{"command":"subscribe","channel":"chat:room-1","id":1}`,
		`{"id":5,"command":"rpc","method":"chat:history","data":{"n":10}}`,
		`{"command":"ping"}`,
		`{"id":3,"command":"history","channel":"c","limit":10,"reverse":true}`,
		`{"command":"publish","channel":"news","data":{"n":1},"id":8,"idempotency_key":"0f8e-41c2:7"}`,
	} {
		if _, _, ok := decodeFast([]byte(frame)); !ok {
			t.Errorf("%s: not taken by the fast path", frame)
		}
	}
}
