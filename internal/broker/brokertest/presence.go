package brokertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// RunPresence runs the presence part of the suite against a fresh store.
func RunPresence(t *testing.T, newStore func(t *testing.T) broker.PresenceStore) {
	ctx := context.Background()
	p := newStore(t)
	ch := "bt-presence"
	// A call whose context is done fails with an error wrapping ctx.Err(),
	// as for the Broker methods.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	checkCancelled(t, map[string]func() error{
		"AddPresence": func() error {
			return p.AddPresence(cctx, ch, broker.ClientInfo{Client: "c0"}, time.Minute)
		},
		"RemovePresence": func() error { return p.RemovePresence(cctx, ch, "c0") },
		"Presence": func() error {
			_, err := p.Presence(cctx, ch)
			return err
		},
		"PresenceStats": func() error {
			_, err := p.PresenceStats(cctx, ch)
			return err
		},
	})
	add := func(client, user string) {
		if err := p.AddPresence(ctx, ch, broker.ClientInfo{Client: client, User: user, Transport: "websocket"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	add("c1", "alice")
	add("c2", "alice")
	add("c3", "")
	add("c3", "") // idempotent
	stats, err := p.PresenceStats(ctx, ch)
	if err != nil || stats != (broker.PresenceStats{Clients: 3, Users: 1}) {
		t.Fatalf("stats %+v %v", stats, err)
	}
	if err := p.RemovePresence(ctx, ch, "c1"); err != nil {
		t.Fatal(err)
	}
	list, err := p.Presence(ctx, ch)
	if err != nil || len(list) != 2 || list[0].Client != "c2" || list[0].User != "alice" || list[1].Client != "c3" {
		t.Fatalf("presence %+v %v", list, err)
	}
	if err := p.RemovePresence(ctx, ch, "nobody"); err != nil {
		t.Fatal(err)
	}
	if list, _ := p.Presence(ctx, "bt-empty"); len(list) != 0 {
		t.Fatalf("empty channel has presence %+v", list)
	}

	// A crowd: adds, an update and removals, past any small-set size a
	// store may use.
	crowd := "bt-presence-crowd"
	for i := range 20 {
		if err := p.AddPresence(ctx, crowd, broker.ClientInfo{Client: fmt.Sprintf("c%02d", i), User: "u"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.AddPresence(ctx, crowd, broker.ClientInfo{Client: "c07", User: "bob"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i += 2 {
		if err := p.RemovePresence(ctx, crowd, fmt.Sprintf("c%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	list, err = p.Presence(ctx, crowd)
	if err != nil || len(list) != 10 {
		t.Fatalf("crowd presence %+v %v", list, err)
	}
	for i, info := range list {
		want := broker.ClientInfo{Client: fmt.Sprintf("c%02d", 2*i+1), User: "u"}
		if want.Client == "c07" {
			want.User = "bob"
		}
		if info != want {
			t.Fatalf("crowd entry %d: %+v, want %+v", i, info, want)
		}
	}
	if stats, err := p.PresenceStats(ctx, crowd); err != nil || stats != (broker.PresenceStats{Clients: 10, Users: 2}) {
		t.Fatalf("crowd stats %+v %v", stats, err)
	}
	for i := 1; i < 20; i += 2 {
		if err := p.RemovePresence(ctx, crowd, fmt.Sprintf("c%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if list, _ := p.Presence(ctx, crowd); len(list) != 0 {
		t.Fatalf("emptied crowd has presence %+v", list)
	}
}
