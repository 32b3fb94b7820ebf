package sse

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestParseRequest(t *testing.T) {
	two := protocol.EncodeCursor(7, []uint64{3, 300})
	one := protocol.EncodeCursor(9, []uint64{12})
	var many []string
	for i := range 17 {
		many = append(many, fmt.Sprintf("channel=c%d", i))
	}
	tests := map[string]struct {
		query, header, auth string
		channels            []string
		resume              *cursor
		since               string // fmt.Sprint of the positions
		token               string
		code                int // 0: valid
	}{
		"one channel":               {query: "channel=news", channels: []string{"news"}},
		"two channels keep order":   {query: "channel=b&channel=a", channels: []string{"b", "a"}},
		"escaped name":              {query: "channel=chat%3Alobby", channels: []string{"chat:lobby"}},
		"other parameters ignored":  {query: "channel=a&foo=bar", channels: []string{"a"}},
		"header id":                 {query: "channel=a&channel=b", header: two, channels: []string{"a", "b"}, resume: &cursor{7, []uint64{3, 300}}},
		"query id":                  {query: "channel=x&lastEventId=" + one, channels: []string{"x"}, resume: &cursor{9, []uint64{12}}},
		"header wins over query":    {query: "channel=x&lastEventId=garbage", header: one, channels: []string{"x"}, resume: &cursor{9, []uint64{12}}},
		"empty query id is none":    {query: "channel=x&lastEventId=", channels: []string{"x"}},
		"sixteen channels":          {query: strings.Join(many[:16], "&"), channels: nil},
		"no channel":                {query: "", code: 422},
		"empty channel":             {query: "channel=", code: 422},
		"bad channel":               {query: "channel=a%20b", code: 422},
		"duplicate":                 {query: "channel=a&channel=a", code: 400},
		"seventeen channels":        {query: strings.Join(many, "&"), code: 429},
		"bad escape":                {query: "channel=%zz", code: 400},
		"id not base64url":          {query: "channel=a", header: "a+b/", code: 400},
		"id with padding":           {query: "channel=a", header: one + "=", code: 400},
		"id for other count":        {query: "channel=a", header: two, code: 400},
		"id too long":               {query: "channel=a", header: strings.Repeat("A", 129), code: 400},
		"id empty bytes":            {query: "channel=a", header: "AA", code: 400},
		"two query ids":             {query: "channel=a&lastEventId=" + one + "&lastEventId=" + one, code: 400},
		"malformed query id":        {query: "channel=a&lastEventId=%21", code: 400},
		"channel with semicolon":    {query: "channel=a;b", code: 400},
		"max offset":                {query: "channel=a", header: protocol.EncodeCursor(1, []uint64{math.MaxUint64}), channels: []string{"a"}, resume: &cursor{1, []uint64{math.MaxUint64}}},
		"id with whitespace":        {query: "channel=a", header: " " + one, code: 400},
		"unknown cursor version":    {query: "channel=a", header: "AgAAAAAM", code: 400},
		"truncated varint":          {query: "channel=a", header: "AQAAAACA", code: 400},
		"many channels one invalid": {query: "channel=a&channel=b&channel=" + url.QueryEscape("é"), code: 422},
		"query token":               {query: "channel=a&token=abc.def.ghi", channels: []string{"a"}, token: "abc.def.ghi"},
		"bearer token":              {query: "channel=a", auth: "Bearer abc", channels: []string{"a"}, token: "abc"},
		"bearer wins over query":    {query: "channel=a&token=old", auth: "bearer new", channels: []string{"a"}, token: "new"},
		"two tokens":                {query: "channel=a&token=x&token=y", code: 400},
		"other auth scheme":         {query: "channel=a", auth: "Basic YTpi", code: 400},
		"bearer without token":      {query: "channel=a", auth: "Bearer", code: 400},
		"since":                     {query: "channel=a&channel=b&since=4:E&since=", channels: []string{"a", "b"}, since: "[4:E <nil>]"},
		"id wins over since":        {query: "channel=a&since=4:E", header: one, channels: []string{"a"}, resume: &cursor{9, []uint64{12}}},
		"bad since with an id":      {query: "channel=a&since=4", header: one, code: 400},
		"since count":               {query: "channel=a&channel=b&since=4:E", code: 400},
		"since without epoch":       {query: "channel=a&since=4:", code: 400},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, perr := parseRequest(tc.query, tc.header, tc.auth, protocol.MaxCursorChannels)
			if tc.code != 0 {
				if perr == nil || perr.Code != tc.code || perr.Message == "" {
					t.Fatalf("got %+v, %v; want error %d", req, perr, tc.code)
				}
				return
			}
			if perr != nil {
				t.Fatalf("unexpected error %v", perr)
			}
			if tc.channels != nil && strings.Join(req.channels, ",") != strings.Join(tc.channels, ",") {
				t.Fatalf("channels %v, want %v", req.channels, tc.channels)
			}
			if req.token != tc.token {
				t.Fatalf("token %q, want %q", req.token, tc.token)
			}
			if (req.resume == nil) != (tc.resume == nil) {
				t.Fatalf("resume %+v, want %+v", req.resume, tc.resume)
			}
			if got := fmtSince(req.since); got != tc.since {
				t.Fatalf("since %s, want %s", got, tc.since)
			}
			if tc.resume != nil && (req.resume.check != tc.resume.check || fmt.Sprint(req.resume.offsets) != fmt.Sprint(tc.resume.offsets)) {
				t.Fatalf("resume %+v, want %+v", req.resume, tc.resume)
			}
		})
	}
}

func TestParseRequestMaxChannels(t *testing.T) {
	if _, perr := parseRequest("channel=a&channel=b&channel=c", "", "", 2); perr == nil || perr.Code != 429 {
		t.Fatalf("3 channels with a limit of 2: %v", perr)
	}
}

// FuzzParseRequest feeds arbitrary query strings, Last-Event-ID and
// Authorization values: the parser never panics, accepts only valid channel
// lists, since positions come one per channel and only without an id, and
// an accepted id has one offset per channel and round-trips through the
// encoder.
func FuzzParseRequest(f *testing.F) {
	seeds := []struct{ query, header, auth string }{
		{"channel=news", "", ""},
		{"channel=a&channel=b", protocol.EncodeCursor(123, []uint64{1, 2}), ""},
		{"channel=a&lastEventId=" + protocol.EncodeCursor(0, []uint64{math.MaxUint64}), "", ""},
		{"channel=a&channel=a", "", ""},
		{"channel=%zz", "", ""},
		{"channel=a", "AQAAAACA", ""},
		{"channel=a", strings.Repeat("_", 128), ""},
		{"lastEventId=x&channel=chat:lobby", "AQ", ""},
		{";;&&==", "\x00", ""},
		{"channel=a&token=t", "", "Bearer x"},
		{"channel=a", "", "bearer"},
		{"channel=a&channel=b&since=3:E&since=", "", ""},
		{"channel=a&since=3:E", protocol.EncodeCursor(1, []uint64{2}), ""},
		{"channel=a&since=:&since=", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.query, s.header, s.auth)
	}
	f.Fuzz(func(t *testing.T, query, header, auth string) {
		req, perr := parseRequest(query, header, auth, protocol.MaxCursorChannels)
		if perr != nil {
			if perr.Message == "" {
				t.Fatalf("error without message: %+v", perr)
			}
			return
		}
		if len(req.channels) == 0 || len(req.channels) > protocol.MaxCursorChannels {
			t.Fatalf("accepted %d channels", len(req.channels))
		}
		seen := map[string]bool{}
		for _, ch := range req.channels {
			if protocol.ValidateChannel(ch) != nil || seen[ch] {
				t.Fatalf("accepted channel %q in %v", ch, req.channels)
			}
			seen[ch] = true
		}
		if req.since != nil && (len(req.since) != len(req.channels) || req.resume != nil) {
			t.Fatalf("%d since positions for %d channels (resume %v)", len(req.since), len(req.channels), req.resume)
		}
		for _, p := range req.since {
			if p != nil && (p.Epoch == "" || len(p.Epoch) > protocol.MaxEpochLength) {
				t.Fatalf("accepted since epoch %q", p.Epoch)
			}
		}
		if req.resume == nil {
			return
		}
		if len(req.resume.offsets) != len(req.channels) {
			t.Fatalf("%d offsets for %d channels", len(req.resume.offsets), len(req.channels))
		}
		id := protocol.EncodeCursor(req.resume.check, req.resume.offsets)
		if len(id) > maxEventIDLength {
			t.Fatalf("re-encoded id of %d bytes", len(id))
		}
		again, perr := parseRequest(query, id, auth, protocol.MaxCursorChannels)
		if perr != nil || again.resume.check != req.resume.check || fmt.Sprint(again.resume.offsets) != fmt.Sprint(req.resume.offsets) {
			t.Fatalf("id %q does not round-trip: %+v %v", id, again.resume, perr)
		}
	})
}

// fmtSince formats since positions as [OFFSET:EPOCH <nil> ...], "" for none.
func fmtSince(ps []*protocol.StreamPosition) string {
	if ps == nil {
		return ""
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "<nil>"
		if p != nil {
			out[i] = protocol.FormatSince(*p)
		}
	}
	return "[" + strings.Join(out, " ") + "]"
}
