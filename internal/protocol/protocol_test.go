package protocol_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestDecodeCommand(t *testing.T) {
	tests := []struct {
		name    string
		frame   string
		want    protocol.Command
		errCode int
		errID   bool
	}{
		{"subscribe", `{"command":"subscribe","channel":"news"}`,
			protocol.Command{Command: "subscribe", Channel: "news"}, 0, false},
		{"with id", `{"id":42,"command":"ping"}`,
			protocol.Command{Command: "ping", ID: 42, HasID: true}, 0, false},
		{"id zero counts", `{"id":0,"command":"ping"}`,
			protocol.Command{Command: "ping", HasID: true}, 0, false},
		{"publish keeps data raw", `{"command":"publish","channel":"c","data":{"a":[1,2]}}`,
			protocol.Command{Command: "publish", Channel: "c", Data: json.RawMessage(`{"a":[1,2]}`)}, 0, false},
		{"null data is data", `{"command":"publish","channel":"c","data":null}`,
			protocol.Command{Command: "publish", Channel: "c", Data: json.RawMessage(`null`)}, 0, false},
		{"unknown fields ignored", `{"command":"ping","future":{"x":1}}`,
			protocol.Command{Command: "ping"}, 0, false},
		{"leading space", "  \n{\"command\":\"ping\"}", protocol.Command{Command: "ping"}, 0, false},
		{"empty", ``, protocol.Command{}, 400, false},
		{"array", `[]`, protocol.Command{}, 400, false},
		{"string", `"ping"`, protocol.Command{}, 400, false},
		{"truncated", `{"command":"ping"`, protocol.Command{}, 400, false},
		{"missing command", `{"id":3}`, protocol.Command{}, 400, true},
		{"command not a string", `{"id":3,"command":1}`, protocol.Command{}, 400, true},
		{"id not an integer", `{"id":1.5,"command":"ping"}`, protocol.Command{}, 400, false},
		{"trailing garbage", `{"command":"ping"} x`, protocol.Command{}, 400, false},
		{"idempotency key", `{"id":5,"command":"publish","channel":"c","data":1,"idempotency_key":"out-7 {x}"}`,
			protocol.Command{Command: "publish", Channel: "c", ID: 5, HasID: true, Data: json.RawMessage(`1`), IdempotencyKey: "out-7 {x}"}, 0, false},
		{"idempotency key escaped", `{"command":"publish","idempotency_key":"a\u0062\"c"}`,
			protocol.Command{Command: "publish", IdempotencyKey: `ab"c`}, 0, false},
		{"idempotency key of 64 bytes", `{"command":"publish","idempotency_key":"` + strings.Repeat("k", 64) + `"}`,
			protocol.Command{Command: "publish", IdempotencyKey: strings.Repeat("k", 64)}, 0, false},
		{"idempotency key of 65 bytes", `{"id":1,"command":"publish","idempotency_key":"` + strings.Repeat("k", 65) + `"}`,
			protocol.Command{}, 400, true},
		{"empty idempotency key", `{"id":1,"command":"publish","idempotency_key":""}`, protocol.Command{}, 400, true},
		{"idempotency key not ASCII", `{"id":1,"command":"publish","idempotency_key":"caf\u00e9"}`, protocol.Command{}, 400, true},
		{"idempotency key with a control byte", `{"id":1,"command":"publish","idempotency_key":"a\tb"}`, protocol.Command{}, 400, true},
		{"idempotency key not a string", `{"id":1,"command":"publish","idempotency_key":7}`, protocol.Command{}, 400, true},
		{"null idempotency key is absent", `{"command":"publish","idempotency_key":null}`, protocol.Command{Command: "publish"}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protocol.DecodeCommand([]byte(tc.frame))
			if tc.errCode != 0 {
				var de *protocol.DecodeError
				if !errors.As(err, &de) || de.Err.Code != tc.errCode || de.HasID != tc.errID {
					t.Fatalf("err = %v, want DecodeError code %d hasID %v", err, tc.errCode, tc.errID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Command != tc.want.Command || got.Channel != tc.want.Channel || got.ID != tc.want.ID ||
				got.HasID != tc.want.HasID || string(got.Data) != string(tc.want.Data) ||
				got.IdempotencyKey != tc.want.IdempotencyKey {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDecodedDataDoesNotAliasFrame(t *testing.T) {
	frame := []byte(`{"command":"publish","channel":"c","data":"abc"}`)
	cmd, err := protocol.DecodeCommand(frame)
	if err != nil {
		t.Fatal(err)
	}
	for i := range frame {
		frame[i] = 'x'
	}
	if string(cmd.Data) != `"abc"` {
		t.Fatalf("data changed with the frame: %s", cmd.Data)
	}
}

func TestValidateChannel(t *testing.T) {
	ok := []string{"news", "chat:lobby", "user#42,43", "a.b-c_d/e@f=g+h!", strings.Repeat("x", 255), "A9"}
	bad := []string{"", " ", "a b", "a\"b", "a\\b", "é", "a\nb", strings.Repeat("x", 256), "a?b", "a%20"}
	for _, c := range ok {
		if err := protocol.ValidateChannel(c); err != nil {
			t.Errorf("%q: %v", c, err)
		}
	}
	for _, c := range bad {
		if err := protocol.ValidateChannel(c); err == nil || err.Code != 422 {
			t.Errorf("%q: got %v, want code 422", c, err)
		}
	}
}

func TestEncoders(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"publication", protocol.AppendPublication(nil, "news", []byte(`{"t":1}`), 7), `{"channel":"news","data":{"t":1},"offset":7}`},
		{"result", protocol.AppendResult(nil, 3, []byte(`{"offset":1}`)), `{"id":3,"result":{"offset":1}}`},
		{"empty result", protocol.AppendResult(nil, -1, nil), `{"id":-1,"result":{}}`},
		{"error with id", protocol.AppendError(nil, 9, true, protocol.ErrUnknownCommand), `{"id":9,"error":{"code":404,"message":"unknown command"}}`},
		{"error escapes", protocol.AppendError(nil, 0, false, protocol.ErrBadRequest.WithMessage(`bad "x" <y>`)), `{"error":{"code":400,"message":"bad \"x\" \u003cy\u003e"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got  %s\nwant %s", tc.got, tc.want)
			}
			if !json.Valid(tc.got) {
				t.Fatal("not valid JSON")
			}
		})
	}
}

func TestCodesAreUnique(t *testing.T) {
	seen := map[int]bool{}
	for _, e := range protocol.Errors {
		if seen[e.Code] {
			t.Errorf("duplicate error code %d", e.Code)
		}
		seen[e.Code] = true
	}
	seenD := map[uint16]bool{}
	for _, d := range protocol.Disconnects {
		if seenD[d.Code] {
			t.Errorf("duplicate close code %d", d.Code)
		}
		seenD[d.Code] = true
		if len(d.Reason) > 123 {
			t.Errorf("close reason of %d too long for a close frame", d.Code)
		}
	}
}

// FuzzDecodeCommand feeds arbitrary frames to the decoder: it must never
// panic, must fail with a DecodeError or succeed with a command name, and
// what it accepts must re-encode as valid JSON in a publication.
func FuzzDecodeCommand(f *testing.F) {
	seeds := []string{
		`{"command":"subscribe","channel":"news"}`,
		`{"command":"unsubscribe","channel":"news","id":1}`,
		`{"command":"publish","channel":"news","data":{"text":"hi","n":[1,2,3]},"id":2}`,
		`{"command":"publish","channel":"news","data":null}`,
		`{"command":"ping","id":9223372036854775807}`,
		`{"command":"connect","token":"abc"}`,
		`{"id":-1}`, `{"id":1e3,"command":"ping"}`, `{"command":"ping"}{}`,
		`{"command":"publish","channel":"c","data":"\ud800"}`,
		`[]`, `null`, `{`, ``, "\xff\xfe", `{"command":"subscribe","channel":"` + strings.Repeat("a", 300) + `"}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		cmd, err := protocol.DecodeCommand(frame)
		if err != nil {
			var de *protocol.DecodeError
			if !errors.As(err, &de) || de.Err.Code != protocol.ErrBadRequest.Code {
				t.Fatalf("unexpected error type %T %v", err, err)
			}
			if !json.Valid(protocol.AppendError(nil, de.ID, de.HasID, de.Err)) {
				t.Fatal("error reply is not valid JSON")
			}
			return
		}
		if cmd.Command == "" {
			t.Fatal("accepted a frame without command")
		}
		if cmd.Data != nil && protocol.ValidateChannel(cmd.Channel) == nil {
			if out := protocol.AppendPublication(nil, cmd.Channel, cmd.Data, 1); !json.Valid(out) {
				t.Fatalf("publication not valid JSON: %s", out)
			}
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	chans := []string{"a", "news:world"}
	check := protocol.CursorCheck(chans, []string{"E1", "E2"})
	s := protocol.EncodeCursor(check, []uint64{0, 1 << 40})
	gotCheck, offs, err := protocol.DecodeCursor(s, 2)
	if err != nil || gotCheck != check || offs[0] != 0 || offs[1] != 1<<40 {
		t.Fatalf("round trip: %v %v %v", gotCheck, offs, err)
	}
	if protocol.CursorCheck(chans, []string{"E1", "E3"}) == check {
		t.Fatal("check does not change with an epoch")
	}
	if protocol.CursorCheck([]string{"b", "news:world"}, []string{"E1", "E2"}) == check {
		t.Fatal("check does not change with the channel list")
	}
	big := make([]uint64, protocol.MaxCursorChannels)
	for i := range big {
		big[i] = 1<<35 - 1
	}
	if s := protocol.EncodeCursor(0xffffffff, big); len(s) > 128 {
		t.Fatalf("cursor of %d channels is %d bytes, over 128", len(big), len(s))
	}
	for _, bad := range []string{"", "!!!", "AQ", protocol.EncodeCursor(1, []uint64{1}), "AgAAAAAB", strings.Repeat("A", 300)} {
		if _, _, err := protocol.DecodeCursor(bad, 2); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(protocol.EncodeCursor(7, []uint64{1, 2, 3}), 3)
	f.Add("AQAAAAA", 0)
	f.Add("____", 1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > protocol.MaxCursorChannels {
			return
		}
		check, offs, err := protocol.DecodeCursor(s, n)
		if err != nil {
			return
		}
		if len(offs) != n {
			t.Fatalf("%d offsets for %d channels", len(offs), n)
		}
		if _, again, err := protocol.DecodeCursor(protocol.EncodeCursor(check, offs), n); err != nil || len(again) != n {
			t.Fatal("re-encoded cursor does not decode")
		}
	})
}

func TestValidateIdempotencyKey(t *testing.T) {
	tests := map[string]bool{
		"k":                       true,
		"0f8e41c2-9b1d:outbox/17": true,
		" ~":                      true,
		strings.Repeat("a", 64):   true,
		"":                        false,
		strings.Repeat("a", 65):   false,
		"tab\there":               false,
		"del\x7f":                 false,
		"caf\xc3\xa9":             false,
	}
	for key, ok := range tests {
		perr := protocol.ValidateIdempotencyKey(key)
		if (perr == nil) != ok {
			t.Errorf("%q: error %v, want valid %v", key, perr, ok)
		}
		if perr != nil && perr.Code != protocol.ErrBadRequest.Code {
			t.Errorf("%q: code %d, want %d", key, perr.Code, protocol.ErrBadRequest.Code)
		}
	}
}
