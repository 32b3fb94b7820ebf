package longpoll

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

var testLimits = limits{maxChannels: protocol.MaxCursorChannels, maxTimeout: 60, defaultTimeout: 25}

func TestParseRequest(t *testing.T) {
	ab := []string{"a", "b"}
	good := encodeCursor(ab, []string{"E1", "E2"}, []uint64{3, 4})
	many := make([]string, 17)
	for i := range many {
		many[i] = "c" + string(rune('a'+i))
	}
	tests := []struct {
		name  string
		query string
		code  int // 0: valid
	}{
		{"one channel", "channel=a", 0},
		{"two channels and a cursor", "channel=b&channel=a&cursor=" + good, 0},
		{"empty cursor is no cursor", "channel=a&cursor=", 0},
		{"unknown parameters are ignored", "channel=a&_=12345", 0},
		{"timeout 0", "channel=a&timeout=0", 0},
		{"timeout 60", "channel=a&timeout=60", 0},
		{"16 channels", "channel=" + strings.Join(many[:16], "&channel="), 0},
		{"no channel", "timeout=5", 422},
		{"empty channel", "channel=", 422},
		{"invalid channel", "channel=a%20b", 422},
		{"duplicate channel", "channel=a&channel=b&channel=a", 400},
		{"17 channels", "channel=" + strings.Join(many, "&channel="), 429},
		{"timeout -1", "channel=a&timeout=-1", 400},
		{"timeout 61", "channel=a&timeout=61", 400},
		{"timeout abc", "channel=a&timeout=abc", 400},
		{"timeout 1.5", "channel=a&timeout=1.5", 400},
		{"empty timeout", "channel=a&timeout=", 400},
		{"two timeouts", "channel=a&timeout=1&timeout=2", 400},
		{"two cursors", "channel=a&channel=b&cursor=" + good + "&cursor=" + good, 400},
		{"cursor not base64", "channel=a&channel=b&cursor=!!!", 400},
		{"cursor too short", "channel=a&channel=b&cursor=AQ", 400},
		{"cursor of another version", "channel=a&channel=b&cursor=AgAAAAAB", 400},
		{"cursor too long", "channel=a&channel=b&cursor=" + strings.Repeat("A", 300), 400},
		{"cursor for fewer channels", "channel=a&channel=b&channel=c&cursor=" + good, 400},
		{"cursor for another list", "channel=a&channel=c&cursor=" + good, 400},
		{"since", "channel=b&channel=a&since=3:E&since=", 0},
		{"since with an empty cursor", "channel=a&since=3:E&cursor=", 0},
		{"since and cursor", "channel=a&channel=b&since=&since=&cursor=" + good, 400},
		{"since count", "channel=a&channel=b&since=3:E", 400},
		{"since malformed", "channel=a&since=3", 400},
		{"SSE-style cursor without list tag", "channel=a&channel=b&cursor=" + protocol.EncodeCursor(1, []uint64{3, 4}), 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			req, perr := parseRequest(q, testLimits)
			switch {
			case tc.code == 0 && perr != nil:
				t.Fatalf("refused: %v", perr)
			case tc.code != 0 && perr == nil:
				t.Fatalf("accepted: %+v", req)
			case tc.code != 0 && perr.Code != tc.code:
				t.Fatalf("code %d, want %d (%s)", perr.Code, tc.code, perr.Message)
			case perr != nil && perr.Message == "":
				t.Fatal("error without message")
			}
		})
	}
}

func TestParseRequestValues(t *testing.T) {
	q, _ := url.ParseQuery("channel=b&channel=a&cursor=" + encodeCursor([]string{"a", "b"}, []string{"E1", "E2"}, []uint64{3, 1 << 40}) + "&timeout=7")
	req, perr := parseRequest(q, testLimits)
	if perr != nil {
		t.Fatal(perr)
	}
	if !slices.Equal(req.channels, []string{"a", "b"}) || req.timeout.Seconds() != 7 || req.cursor == nil {
		t.Fatalf("parsed %+v", req)
	}
	if !slices.Equal(req.cursor.offsets, []uint64{3, 1 << 40}) || req.cursor.check != protocol.CursorCheck(req.channels, []string{"E1", "E2"}) {
		t.Fatalf("cursor %+v", req.cursor)
	}
	// Since positions follow their channels into sorted order.
	q, _ = url.ParseQuery("channel=c&channel=a&channel=b&since=7:E&since=&since=2:F")
	req, perr = parseRequest(q, testLimits)
	if perr != nil {
		t.Fatal(perr)
	}
	if !slices.Equal(req.channels, []string{"a", "b", "c"}) || len(req.since) != 3 ||
		req.since[0] != nil || *req.since[1] != (protocol.StreamPosition{Offset: 2, Epoch: "F"}) || *req.since[2] != (protocol.StreamPosition{Offset: 7, Epoch: "E"}) {
		t.Fatalf("since %+v for %v", req.since, req.channels)
	}
	q, _ = url.ParseQuery("channel=a")
	if req, _ := parseRequest(q, testLimits); req.timeout.Seconds() != 25 || req.cursor != nil || req.since != nil {
		t.Fatalf("defaults: %+v", req)
	}
}

func TestCursorLength(t *testing.T) {
	// The longest cursor (16 channels, offsets near 2^35) stays well inside
	// what protocol.DecodeCursor accepts and a URL carries.
	chans := make([]string, protocol.MaxCursorChannels)
	epochs := make([]string, len(chans))
	offs := make([]uint64, len(chans))
	for i := range chans {
		chans[i] = strings.Repeat(string(rune('a'+i)), 255)
		epochs[i] = "EPOCH"
		offs[i] = 1<<35 - 1
	}
	c := encodeCursor(chans, epochs, offs)
	if len(c) > 150 {
		t.Fatalf("cursor of %d bytes", len(c))
	}
	if _, perr := decodeCursor(c, chans); perr != nil {
		t.Fatal(perr)
	}
}

// FuzzParseRequest feeds arbitrary query strings to the request parser: it
// must never panic, and whatever it accepts must be a well-formed request
// with one since position per channel (or none, and never with a cursor)
// and a cursor that encodes back to an equivalent one.
func FuzzParseRequest(f *testing.F) {
	ab := []string{"a", "b"}
	f.Add("channel=a")
	f.Add("channel=a&channel=b&timeout=25&cursor=" + encodeCursor(ab, []string{"E1", "E2"}, []uint64{0, 9}))
	f.Add("channel=b&channel=a&cursor=" + encodeCursor(ab, []string{"", ""}, []uint64{1 << 63, 1}))
	f.Add("channel=a&channel=a")
	f.Add("channel=a&timeout=-1")
	f.Add("channel=a&cursor=AQAAAAAA")
	f.Add("channel=a&cursor=____&timeout=0")
	f.Add("channel=news:world&channel=dialog%23alice,bob&timeout=60")
	f.Add("channel=%zz")
	f.Add("")
	f.Add("channel=b&channel=a&since=3:E&since=")
	f.Add("channel=a&since=3:E&cursor=AQAAAAAA")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, perr := parseRequest(q, testLimits)
		if perr != nil {
			if perr.Message == "" || (perr.Code != 400 && perr.Code != 422 && perr.Code != 429) {
				t.Fatalf("error %+v", perr)
			}
			return
		}
		if n := len(req.channels); n == 0 || n > testLimits.maxChannels {
			t.Fatalf("%d channels accepted", n)
		}
		for i, ch := range req.channels {
			if protocol.ValidateChannel(ch) != nil || i > 0 && req.channels[i-1] >= ch {
				t.Fatalf("channels %q not valid, sorted and unique", req.channels)
			}
		}
		if req.timeout < 0 || req.timeout.Seconds() > float64(testLimits.maxTimeout) {
			t.Fatalf("timeout %s accepted", req.timeout)
		}
		if req.since != nil && (len(req.since) != len(req.channels) || req.cursor != nil) {
			t.Fatalf("%d since positions for %d channels, cursor %v", len(req.since), len(req.channels), req.cursor)
		}
		if req.cursor == nil {
			return
		}
		if len(req.cursor.offsets) != len(req.channels) {
			t.Fatalf("%d offsets for %d channels", len(req.cursor.offsets), len(req.channels))
		}
		again, perr := decodeCursor(encodeCursorCheck(req.channels, req.cursor), req.channels)
		if perr != nil || again.check != req.cursor.check || !slices.Equal(again.offsets, req.cursor.offsets) {
			t.Fatalf("cursor does not round-trip: %+v %v", again, perr)
		}
	})
}

// encodeCursorCheck encodes c for channels keeping its check as it is.
func encodeCursorCheck(channels []string, c *cursor) string {
	return protocol.EncodeCursor(c.check, append(slices.Clone(c.offsets), listTag(channels)))
}
