package client_test

import (
	"encoding/json"
	"testing"

	"github.com/switchboardhq/switchboard/client"
)

// TestServerSubscription: a subscription the server API makes reaches the
// client as a Subscription with Options.ServerSubscriptions' callbacks; it
// is subscribed again with recovery after a reconnect (nothing lost,
// nothing twice), and /api/unsubscribe ends it with OnServerUnsubscribe.
func TestServerSubscription(t *testing.T) {
	n := startNode(t, nil)
	rec := newRecorder()
	var subscribed []string
	var data []string
	var unsubscribed []int
	c := client.New(n.url(), client.Options{
		Backoff: fastBackoff,
		OnState: rec.onState,
		ServerSubscriptions: client.SubscribeOptions{
			OnPublication: rec.onPublication,
			OnGap:         rec.onGap,
		},
		OnServerSubscribe: func(s *client.Subscription, d json.RawMessage) {
			rec.add(func() { subscribed, data = append(subscribed, s.Channel()), append(data, string(d)) })
		},
		OnServerUnsubscribe: func(s *client.Subscription, code int, _ string) {
			rec.add(func() { unsubscribed = append(unsubscribed, code) })
		},
	})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	res, err := n.api(t, "/api/subscribe", map[string]any{"client": c.Info().Client, "channel": "feed", "data": map[string]any{"why": "test"}})
	if err != nil || res["connections"] != float64(1) {
		t.Fatalf("subscribe: %v %v", res, err)
	}
	rec.wait(t, "the subscribed callback", func() bool { return len(subscribed) == 1 })
	if subscribed[0] != "feed" || data[0] != `{"why":"test"}` {
		t.Fatalf("subscribed %v with %v", subscribed, data)
	}
	for i := 1; i <= 5; i++ {
		n.publish(t, "feed", i)
	}
	rec.wait(t, "5 publications", func() bool { return len(rec.pubs) == 5 })

	// A reconnect: the client subscribes the channel again from offset 5
	// and gets what was published while it was away.
	first := c.Info().Client
	n.disconnect(t, first, true)
	for i := 6; i <= 10; i++ {
		n.publish(t, "feed", i)
	}
	rec.wait(t, "10 publications", func() bool { return len(rec.pubs) == 10 })
	rec.mu.Lock()
	lost, dup, disorder := checkSequence(rec.pubs, 1, 10)
	gaps := len(rec.gaps)
	rec.mu.Unlock()
	if lost+dup > 0 || disorder || gaps > 0 {
		t.Fatalf("lost %d, dup %d, out of order %v, gaps %d", lost, dup, disorder, gaps)
	}
	if c.Info().Client == first {
		t.Fatal("no reconnect happened")
	}
	if _, err := c.Subscribe(ctxT(t), "feed", client.SubscribeOptions{}); err == nil {
		t.Fatal("Subscribe of a server-side subscription's channel succeeded")
	}

	res, err = n.api(t, "/api/unsubscribe", map[string]any{"client": c.Info().Client, "channel": "feed"})
	if err != nil || res["connections"] != float64(1) {
		t.Fatalf("unsubscribe: %v %v", res, err)
	}
	rec.wait(t, "the unsubscribed callback", func() bool { return len(unsubscribed) == 1 })
	if unsubscribed[0] != 2000 {
		t.Fatalf("unsubscribed with %v", unsubscribed)
	}
	// The channel is free again for the application.
	if _, err := c.Subscribe(ctxT(t), "feed", client.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
}
