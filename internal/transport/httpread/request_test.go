package httpread

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		query   string
		history bool
		want    string // channel, since, limit, reverse; "" when refused
		code    int
	}{
		{"channel", "channel=a", true, "a <nil> <nil> false", 0},
		{"all options", "channel=a&since=3:E&limit=10&reverse=true", true, "a 3:E 10 true", 0},
		{"reverse false", "channel=a&reverse=false", true, "a <nil> <nil> false", 0},
		{"limit 0", "channel=a&limit=0", true, "a <nil> 0 false", 0},
		{"empty since", "channel=a&since=", true, "a <nil> <nil> false", 0},
		{"other parameters ignored", "channel=a&_=1", true, "a <nil> <nil> false", 0},
		{"presence ignores history options", "channel=a&limit=x", false, "a <nil> <nil> false", 0},
		{"no channel", "limit=1", true, "", 422},
		{"bad channel", "channel=a%20b", false, "", 422},
		{"two channels", "channel=a&channel=b", false, "", 400},
		{"bad since", "channel=a&since=x:E", true, "", 400},
		{"two since", "channel=a&since=1:E&since=2:E", true, "", 400},
		{"negative limit", "channel=a&limit=-1", true, "", 400},
		{"signed limit", "channel=a&limit=+1", true, "", 400},
		{"empty limit", "channel=a&limit=", true, "", 400},
		{"huge limit", "channel=a&limit=99999999999", true, "", 400},
		{"bad reverse", "channel=a&reverse=yes", true, "", 400},
		{"two reverse", "channel=a&reverse=true&reverse=true", true, "", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			req, perr := parseRequest(q, tc.history)
			if tc.code != 0 {
				if perr == nil || perr.Code != tc.code || perr.Message == "" {
					t.Fatalf("got %+v, %v; want code %d", req, perr, tc.code)
				}
				return
			}
			if perr != nil {
				t.Fatal(perr)
			}
			if got := describe(req); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func describe(r request) string {
	since, limit := "<nil>", "<nil>"
	if r.since != nil {
		since = protocol.FormatSince(*r.since)
	}
	if r.limit != nil {
		limit = strconv.Itoa(*r.limit)
	}
	rev := "false"
	if r.reverse {
		rev = "true"
	}
	return r.channel + " " + since + " " + limit + " " + rev
}

// FuzzParseRequest feeds arbitrary query strings: the parser never panics,
// refuses with 400 or 422 and a message, and what it accepts is a valid
// channel with a non-negative limit and a well-formed since.
func FuzzParseRequest(f *testing.F) {
	f.Add("channel=a&since=3:E&limit=10&reverse=true", true)
	f.Add("channel=a", false)
	f.Add("channel=%zz&limit=-1", true)
	f.Add("since=:&channel=a&channel=b", true)
	f.Fuzz(func(t *testing.T, raw string, history bool) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, perr := parseRequest(q, history)
		if perr != nil {
			if perr.Message == "" || (perr.Code != 400 && perr.Code != 422) {
				t.Fatalf("error %+v", perr)
			}
			return
		}
		if protocol.ValidateChannel(req.channel) != nil {
			t.Fatalf("accepted channel %q", req.channel)
		}
		if req.limit != nil && *req.limit < 0 {
			t.Fatalf("accepted limit %d", *req.limit)
		}
		if req.since != nil && (req.since.Epoch == "" || len(req.since.Epoch) > protocol.MaxEpochLength) {
			t.Fatalf("accepted since %+v", req.since)
		}
		if !history && (req.since != nil || req.limit != nil || req.reverse) {
			t.Fatalf("history options on another endpoint: %+v", req)
		}
	})
}
