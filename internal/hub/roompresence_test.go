package hub

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// TestRoomPresenceQueue runs sequences of membership changes through the
// room presence queue of a started hub: whatever the sequence, the store
// ends with exactly the members whose last change was a join, a leave of
// a member whose join never ran changes nothing, and a refresh keeps the
// members.
func TestRoomPresenceQueue(t *testing.T) {
	type step struct {
		kind, room, client string
	}
	tests := map[string]struct {
		steps []step
		want  map[string][]string // room -> clients in presence
	}{
		"join": {
			[]step{{"join", "r", "a"}},
			map[string][]string{"r": {"a"}},
		},
		"join then leave": {
			[]step{{"join", "r", "a"}, {"leave", "r", "a"}},
			map[string][]string{"r": nil},
		},
		"leave without join": {
			[]step{{"leave", "r", "a"}, {"join", "r", "b"}},
			map[string][]string{"r": {"b"}},
		},
		"join again after a kick": {
			[]step{{"join", "r", "a"}, {"leave", "r", "a"}, {"join", "r", "a"}},
			map[string][]string{"r": {"a"}},
		},
		"two rooms, refreshed": {
			[]step{{"join", "r", "a"}, {"join", "s", "a"}, {"refresh", "", ""}, {"leave", "r", "a"}, {"refresh", "", ""}},
			map[string][]string{"r": nil, "s": {"a"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := memory.NewPresence()
			h := New(Config{Metrics: metrics.New(prometheus.NewRegistry())}, memory.New(memory.Options{}), p)
			if err := h.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = h.Shutdown(ctx)
			}()
			for _, s := range tc.steps {
				op := roomPresenceOp{kind: s.kind, member: roomMember{s.room, s.client}, info: broker.ClientInfo{Client: s.client}}
				if s.kind == "join" {
					op.done = make(chan struct{})
				}
				h.enqueueRoomPresence(op)
			}
			// A final join of another room marks the end of the sequence.
			end := roomPresenceOp{kind: "join", member: roomMember{"end", "z"}, info: broker.ClientInfo{Client: "z"}, done: make(chan struct{})}
			h.enqueueRoomPresence(end)
			select {
			case <-end.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the queue did not run")
			}
			for room, want := range tc.want {
				list, err := p.Presence(context.Background(), RoomPresenceChannel(room))
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, c := range list {
					got = append(got, c.Client)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("presence of room %q: %v, want %v", room, got, want)
				}
			}
		})
	}
}
