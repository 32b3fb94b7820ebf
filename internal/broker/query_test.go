package broker_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/switchboardhq/switchboard/internal/broker"
)

func TestSelectHistory(t *testing.T) {
	pos := broker.Position{Offset: 8, Epoch: "e"}
	kept := func() []broker.Publication { // 4 to 8
		var pubs []broker.Publication
		for o := uint64(4); o <= 8; o++ {
			pubs = append(pubs, broker.Publication{Offset: o})
		}
		return pubs
	}
	since := func(off uint64, epoch string) *broker.Position { return &broker.Position{Offset: off, Epoch: epoch} }
	tests := map[string]struct {
		q        broker.HistoryQuery
		want     string // offsets returned
		wantRead bool
		wantErr  error
	}{
		"position only":        {q: broker.HistoryQuery{}, want: "[]"},
		"position only since":  {q: broker.HistoryQuery{Since: since(2, "e")}, want: "[]"},
		"all":                  {q: broker.HistoryQuery{Limit: -1}, want: "[4 5 6 7 8]", wantRead: true},
		"limit":                {q: broker.HistoryQuery{Limit: 2}, want: "[4 5]", wantRead: true},
		"limit above kept":     {q: broker.HistoryQuery{Limit: 50}, want: "[4 5 6 7 8]", wantRead: true},
		"reverse":              {q: broker.HistoryQuery{Limit: 2, Reverse: true}, want: "[8 7]", wantRead: true},
		"since":                {q: broker.HistoryQuery{Limit: -1, Since: since(6, "e")}, want: "[7 8]", wantRead: true},
		"since before kept":    {q: broker.HistoryQuery{Limit: -1, Since: since(1, "e")}, want: "[4 5 6 7 8]", wantRead: true},
		"since top":            {q: broker.HistoryQuery{Limit: -1, Since: since(8, "e")}, want: "[]", wantRead: true},
		"since reverse limit":  {q: broker.HistoryQuery{Limit: 2, Reverse: true, Since: since(5, "e")}, want: "[8 7]", wantRead: true},
		"other epoch":          {q: broker.HistoryQuery{Limit: -1, Since: since(6, "x")}, want: "[]", wantErr: broker.ErrEpochMismatch},
		"other epoch, limit 0": {q: broker.HistoryQuery{Since: since(6, "x")}, want: "[]", wantErr: broker.ErrEpochMismatch},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			read := false
			res, err := broker.SelectHistory(pos, tc.q, func(after uint64) ([]broker.Publication, error) {
				read = true
				if tc.q.Since != nil && after != tc.q.Since.Offset {
					t.Errorf("read after %d, want %d", after, tc.q.Since.Offset)
				}
				return kept(), nil
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var got []uint64
			for _, p := range res.Publications {
				got = append(got, p.Offset)
			}
			if fmt.Sprint(got) != tc.want || res.Position != pos || read != tc.wantRead {
				t.Fatalf("got %v at %+v (read %v), want %s at %+v (read %v)", got, res.Position, read, tc.want, pos, tc.wantRead)
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		res, err := broker.SelectHistory(pos, broker.HistoryQuery{Limit: -1}, func(uint64) ([]broker.Publication, error) { return nil, boom })
		if !errors.Is(err, boom) || res.Position != (broker.Position{}) {
			t.Fatalf("got %+v, %v", res, err)
		}
	})
}

func TestCountPresence(t *testing.T) {
	tests := map[string]struct {
		list []broker.ClientInfo
		want broker.PresenceStats
	}{
		"empty":           {nil, broker.PresenceStats{}},
		"anonymous":       {[]broker.ClientInfo{{Client: "a"}, {Client: "b"}}, broker.PresenceStats{Clients: 2}},
		"one user twice":  {[]broker.ClientInfo{{Client: "a", User: "u"}, {Client: "b", User: "u"}}, broker.PresenceStats{Clients: 2, Users: 1}},
		"users and anons": {[]broker.ClientInfo{{Client: "a", User: "u"}, {Client: "b", User: "v"}, {Client: "c"}}, broker.PresenceStats{Clients: 3, Users: 2}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := broker.CountPresence(tc.list); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
