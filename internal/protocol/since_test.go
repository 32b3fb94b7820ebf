package protocol_test

import (
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestParseSince(t *testing.T) {
	pos := func(o uint64, e string) *protocol.StreamPosition {
		return &protocol.StreamPosition{Offset: o, Epoch: e}
	}
	tests := []struct {
		name     string
		vals     []string
		channels int
		want     []*protocol.StreamPosition
		bad      bool
	}{
		{"absent", nil, 2, nil, false},
		{"one", []string{"41:KZ3MA7QD"}, 1, []*protocol.StreamPosition{pos(41, "KZ3MA7QD")}, false},
		{"zero offset", []string{"0:e"}, 1, []*protocol.StreamPosition{pos(0, "e")}, false},
		{"empty is from now", []string{"", "3:e"}, 2, []*protocol.StreamPosition{nil, pos(3, "e")}, false},
		{"epoch with a colon", []string{"3:a:b"}, 1, []*protocol.StreamPosition{pos(3, "a:b")}, false},
		{"max offset", []string{"18446744073709551615:e"}, 1, []*protocol.StreamPosition{pos(1<<64-1, "e")}, false},
		{"long epoch", []string{"1:" + strings.Repeat("e", protocol.MaxEpochLength)}, 1, []*protocol.StreamPosition{pos(1, strings.Repeat("e", protocol.MaxEpochLength))}, false},
		{"too few", []string{"1:e"}, 2, nil, true},
		{"too many", []string{"1:e", "2:e"}, 1, nil, true},
		{"no colon", []string{"41"}, 1, nil, true},
		{"no offset", []string{":e"}, 1, nil, true},
		{"no epoch", []string{"1:"}, 1, nil, true},
		{"signed offset", []string{"+1:e"}, 1, nil, true},
		{"negative offset", []string{"-1:e"}, 1, nil, true},
		{"hex offset", []string{"0x1:e"}, 1, nil, true},
		{"offset overflow", []string{"18446744073709551616:e"}, 1, nil, true},
		{"epoch too long", []string{"1:" + strings.Repeat("e", protocol.MaxEpochLength+1)}, 1, nil, true},
		{"space in epoch", []string{"1:a b"}, 1, nil, true},
		{"control in epoch", []string{"1:a\x00"}, 1, nil, true},
		{"non-ASCII epoch", []string{"1:caf\xc3\xa9"}, 1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, perr := protocol.ParseSince(tt.vals, tt.channels)
			if tt.bad {
				if perr == nil || perr.Code != protocol.ErrBadRequest.Code {
					t.Fatalf("got %v, %v; want a 400", got, perr)
				}
				return
			}
			if perr != nil {
				t.Fatal(perr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d positions, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if (got[i] == nil) != (tt.want[i] == nil) || got[i] != nil && *got[i] != *tt.want[i] {
					t.Errorf("position %d: got %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func FuzzParseSince(f *testing.F) {
	f.Add("41:KZ3MA7QD", 1)
	f.Add("", 1)
	f.Add(":", 1)
	f.Add("99999999999999999999:x", 1)
	f.Fuzz(func(t *testing.T, v string, n int) {
		if n < 1 || n > protocol.MaxCursorChannels {
			return
		}
		vals := make([]string, n)
		for i := range vals {
			vals[i] = v
		}
		got, perr := protocol.ParseSince(vals, n)
		if perr != nil {
			if perr.Code != protocol.ErrBadRequest.Code {
				t.Fatalf("code %d", perr.Code)
			}
			return
		}
		if len(got) != n {
			t.Fatalf("%d positions for %d channels", len(got), n)
		}
		if v == "" {
			if got[0] != nil {
				t.Fatal("empty value gave a position")
			}
			return
		}
		// A position round-trips through FormatSince.
		again, perr := protocol.ParseSince([]string{protocol.FormatSince(*got[0])}, 1)
		if perr != nil || *again[0] != *got[0] {
			t.Fatalf("%q does not round-trip: %v", v, perr)
		}
	})
}
