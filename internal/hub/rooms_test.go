package hub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestParseRoomData(t *testing.T) {
	tests := map[string]struct {
		data string
		code int // 0: ok
	}{
		"room":          {`{"room":"call"}`, 0},
		"with options":  {`{"room":"ns:call","mode":"p2p","codec":"vp9"}`, 0},
		"missing":       {``, 400},
		"not an object": {`"call"`, 400},
		"no room":       {`{"mode":"sfu"}`, 400},
		"room a number": {`{"room":1}`, 400},
		"bad name":      {`{"room":"a b"}`, 422},
		"longest name":  {`{"room":"` + strings.Repeat("r", MaxRoomLength) + `"}`, 0},
		// Its participant list, "!room:" + name, would be over 255 bytes.
		"name too long": {`{"room":"` + strings.Repeat("r", MaxRoomLength+1) + `"}`, 422},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var raw json.RawMessage
			if tc.data != "" {
				raw = json.RawMessage(tc.data)
			}
			_, perr := parseRoomData(raw)
			switch {
			case tc.code == 0 && perr != nil:
				t.Fatalf("parseRoomData(%s): %v", tc.data, perr)
			case tc.code != 0 && (perr == nil || perr.Code != tc.code):
				t.Fatalf("parseRoomData(%s) = %v, want code %d", tc.data, perr, tc.code)
			}
		})
	}
}

func FuzzParseRoomData(f *testing.F) {
	for _, s := range []string{`{"room":"call"}`, `{"room":"ns:call","mode":"p2p","codec":"vp9","sdp":"v=0"}`, `{"room":""}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, perr := parseRoomData(data)
		if perr == nil && d.Room == "" {
			t.Fatal("accepted data without a room")
		}
		if perr == nil && protocol.ValidateChannel(RoomPresenceChannel(d.Room)) != nil {
			t.Fatalf("accepted room %q, whose participant list is not a valid channel", d.Room)
		}
	})
}
