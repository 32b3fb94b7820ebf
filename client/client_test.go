package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// fastBackoff keeps reconnects quick in tests.
var fastBackoff = client.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond, Stable: time.Second}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestStates walks the state machine over a real node: connecting,
// connected, back to connecting after a close that allows reconnecting
// (4003), disconnected for good after one that does not (4500), and
// disconnected after Close.
func TestStates(t *testing.T) {
	n := startNode(t, nil)
	rec := newRecorder()
	c := client.New(n.url(), client.Options{Backoff: fastBackoff, OnState: rec.onState})
	defer c.Close()
	if c.State() != client.StateDisconnected {
		t.Fatalf("new client is %v", c.State())
	}
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	first := c.Info()
	if first.Client == "" || first.Node == "" || first.URL != n.url() {
		t.Fatalf("info %+v", first)
	}
	n.disconnect(t, first.Client, true)
	rec.wait(t, "a second connection", func() bool { return rec.connections() == 2 })
	if c.Info().Client == first.Client {
		t.Fatal("the new connection has the old client id")
	}
	n.disconnect(t, c.Info().Client, false)
	rec.wait(t, "disconnected", func() bool { return rec.states[len(rec.states)-1].State == client.StateDisconnected })

	rec.mu.Lock()
	var got []string
	for _, s := range rec.states {
		e := ""
		var ce *client.CloseError
		if errors.As(s.Err, &ce) {
			e = fmt.Sprint(ce.Code)
		}
		got = append(got, s.State.String()+e)
	}
	rec.mu.Unlock()
	want := []string{"connecting", "connected", "connecting4003", "connected", "disconnected4500"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	// Stopped for good: Connect starts again.
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c.State() != client.StateDisconnected {
		t.Fatalf("closed client is %v", c.State())
	}
	if _, err := c.Publish(ctxT(t), "x", 1); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// TestConnectStoppedForGood: a server that refuses the client's token
// (4502) stops the loop, and Connect says why.
func TestConnectStoppedForGood(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.AllowAnonymous = false; c.JWTSecret = jwtSecret })
	c := client.New(n.url(), client.Options{Backoff: fastBackoff, Token: "not-a-token"})
	defer c.Close()
	err := c.Connect(ctxT(t))
	var se *client.Error
	if !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("Connect = %v, want the server's 401", err)
	}
	if c.State() != client.StateDisconnected {
		t.Fatalf("state %v", c.State())
	}
}

// cutWhilePublishing subscribes c to channel and publishes total
// publications through the nodes' APIs (in turn) while it cuts c's
// connection cuts times (with cut, or /api/disconnect when cut is nil),
// each time waiting until it is connected again. It returns the first and
// last offsets c should have delivered.
func cutWhilePublishing(t *testing.T, c *client.Client, rec *recorder, nodes []*node, channel string, total, cuts int, cut func()) (first, last uint64) {
	t.Helper()
	sub, err := c.Subscribe(ctxT(t), channel, client.SubscribeOptions{OnPublication: rec.onPublication, OnGap: rec.onGap})
	if err != nil {
		t.Fatal(err)
	}
	start := sub.Position().Offset
	var published atomic.Int64
	var lastOff atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range total {
			// A backend retries a publish the node could not take now
			// (503), with the same idempotency key, as docs/protocol.md
			// says: the publication still lands once.
			body := map[string]any{"channel": channel, "data": i, "idempotency_key": fmt.Sprint("cut-", i)}
			res, err := nodes[i%len(nodes)].api(t, "/api/publish", body)
			for try := 0; err != nil && strings.Contains(err.Error(), ": 503 ") && try < 20; try++ {
				time.Sleep(50 * time.Millisecond)
				res, err = nodes[i%len(nodes)].api(t, "/api/publish", body)
			}
			if err != nil {
				t.Error(err)
				return
			}
			lastOff.Store(uint64(res["offset"].(float64)))
			published.Add(1)
			if i%5 == 0 {
				time.Sleep(time.Millisecond) // spread the publications over the cuts
			}
		}
	}()
	urls := map[string]bool{}
	prevURL := c.Info().URL
	during := 0 // cuts made while the publisher was still publishing
	for i := range cuts {
		info := c.Info()
		for info.Client == "" {
			rec.wait(t, "a connection", func() bool { return rec.connections() > i })
			info = c.Info()
		}
		if len(nodes) > 1 && i > 0 && info.URL == prevURL {
			t.Errorf("cut %d: reconnected to the same node %s", i, info.URL)
		}
		prevURL = info.URL
		urls[info.URL] = true
		// A moment of live traffic, then cut.
		rec.mu.Lock()
		seen := len(rec.pubs)
		rec.mu.Unlock()
		rec.wait(t, "traffic or the end", func() bool { return len(rec.pubs) > seen || published.Load() == int64(total) })
		if published.Load() < int64(total) {
			during++
		}
		if cut != nil {
			cut()
		} else {
			nodes[i%len(nodes)].disconnect(t, info.Client, true)
		}
		rec.wait(t, "the next connection", func() bool { return rec.connections() > i+1 })
	}
	wg.Wait()
	last = lastOff.Load()
	rec.wait(t, "every publication", func() bool {
		return len(rec.pubs) > 0 && rec.pubs[len(rec.pubs)-1].Offset >= last
	})
	t.Logf("%d cuts (%d while publishing) over %d endpoints, %d publications", cuts, during, len(urls), total)
	return start + 1, last
}

// TestRecoverAfterAPIDisconnect cuts a subscriber 25 times with
// /api/disconnect while 500 publications are made: it delivers each once,
// in order.
func TestRecoverAfterAPIDisconnect(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.HistorySize = 10000; c.HistoryTTL = time.Hour })
	rec := newRecorder()
	c := client.New(n.url(), client.Options{Backoff: fastBackoff, OnState: rec.onState})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	first, last := cutWhilePublishing(t, c, rec, []*node{n}, "feed", 500, 25, nil)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lost, dup, disorder := checkSequence(rec.pubs, first, last)
	t.Logf("offsets %d..%d: %d delivered, %d lost, %d duplicated, %d gaps", first, last, len(rec.pubs), lost, dup, len(rec.gaps))
	if lost != 0 || dup != 0 || disorder || len(rec.gaps) != 0 || uint64(len(rec.pubs)) != last-first+1 {
		t.Fatalf("lost %d, duplicated %d, out of order %v, gaps %v", lost, dup, disorder, rec.gaps)
	}
}

// TestRecoverAfterTCPCuts cuts the subscriber's TCP connection 25 times
// (no close frame: the client sees 1006) while 500 publications are made:
// it delivers each once, in order.
func TestRecoverAfterTCPCuts(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.HistorySize = 10000; c.HistoryTTL = time.Hour })
	p := startProxy(t, n.addr)
	rec := newRecorder()
	c := client.New(p.url(), client.Options{Backoff: fastBackoff, OnState: rec.onState})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	first, last := cutWhilePublishing(t, c, rec, []*node{n}, "tcp", 500, 25, p.cut)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lost, dup, disorder := checkSequence(rec.pubs, first, last)
	abnormal := 0
	for _, s := range rec.states {
		var ce *client.CloseError
		if errors.As(s.Err, &ce) && ce.Code == 1006 {
			abnormal++
		}
	}
	t.Logf("offsets %d..%d: %d delivered, %d lost, %d duplicated, %d gaps, %d connections lost without a close frame", first, last, len(rec.pubs), lost, dup, len(rec.gaps), abnormal)
	if lost != 0 || dup != 0 || disorder || len(rec.gaps) != 0 || uint64(len(rec.pubs)) != last-first+1 || abnormal < 25 {
		t.Fatalf("lost %d, duplicated %d, out of order %v, gaps %v, %d abnormal closes", lost, dup, disorder, rec.gaps, abnormal)
	}
}

// TestRecoverAfterServerRestart restarts the only node a client knows
// while its history lives in Redis: what was published meanwhile (through
// another node) is recovered after the restart.
func TestRecoverAfterServerRestart(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	onRedis := func(c *config.Config) { c.Broker = r.URL(); c.HistorySize = 1000; c.HistoryTTL = time.Hour }
	a := startNode(t, onRedis)
	b := startNode(t, onRedis)
	rec := newRecorder()
	c := client.New(a.url(), client.Options{Backoff: fastBackoff, OnState: rec.onState})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctxT(t), "restart", client.SubscribeOptions{OnPublication: rec.onPublication, OnGap: rec.onGap}); err != nil {
		t.Fatal(err)
	}
	b.publish(t, "restart", "before")
	rec.wait(t, "the first publication", func() bool { return len(rec.pubs) == 1 })

	a.stop()
	rec.wait(t, "the close of the shutdown", func() bool {
		for _, s := range rec.states {
			var ce *client.CloseError
			if errors.As(s.Err, &ce) && ce.Code == 4000 {
				return true
			}
		}
		return false
	})
	for i := range 10 {
		b.publish(t, "restart", i)
	}
	// The same address again: the client only knows this one.
	var again *node
	var err error
	for range 50 {
		if again, err = runNode(a.addr, onRedis); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // the port may linger a moment
	}
	if err != nil {
		t.Fatal(err)
	}
	defer again.stop()
	rec.wait(t, "the publications made while the node was down", func() bool { return len(rec.pubs) == 11 })
	b.publish(t, "restart", "after")
	rec.wait(t, "a live publication", func() bool { return len(rec.pubs) == 12 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lost, dup, disorder := checkSequence(rec.pubs, 1, 12)
	if lost != 0 || dup != 0 || disorder || len(rec.gaps) != 0 {
		t.Fatalf("lost %d, duplicated %d, out of order %v, gaps %v", lost, dup, disorder, rec.gaps)
	}
}

// TestGapWhenHistoryCannotCover keeps a client away while more is
// published than history holds: OnGap says so, with where it stopped and
// where it goes on, and the next publication follows.
func TestGapWhenHistoryCannotCover(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.HistorySize = 5 })
	g := newGate()
	rec := newRecorder()
	c := client.New("", client.Options{
		Backoff:  fastBackoff,
		OnState:  rec.onState,
		Endpoint: heldEndpoint(g, n.url()),
	})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctxT(t), "small", client.SubscribeOptions{OnPublication: rec.onPublication, OnGap: rec.onGap}); err != nil {
		t.Fatal(err)
	}
	n.publish(t, "small", 1)
	n.publish(t, "small", 2)
	rec.wait(t, "two publications", func() bool { return len(rec.pubs) == 2 })
	n.disconnect(t, c.Info().Client, true)
	rec.wait(t, "connecting", func() bool { return rec.states[len(rec.states)-1].State == client.StateConnecting })
	for i := 3; i <= 22; i++ {
		n.publish(t, "small", i)
	}
	g.release()
	rec.wait(t, "the gap", func() bool { return len(rec.gaps) == 1 })
	n.publish(t, "small", 23)
	rec.wait(t, "the publication after the gap", func() bool { return len(rec.pubs) == 3 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	gap := rec.gaps[0]
	if gap.Channel != "small" || gap.Reason != client.GapNotRecovered || gap.From.Offset != 2 || gap.To.Offset != 22 || gap.To.Epoch != gap.From.Epoch {
		t.Fatalf("gap %+v", gap)
	}
	if rec.pubs[2].Offset != 23 {
		t.Fatalf("after the gap: %+v", rec.pubs[2])
	}
}

// TestResetWhenBrokerLosesHistory: Redis restarts without its data under a
// connected client; the next publication comes after a reset gap.
func TestResetWhenBrokerLosesHistory(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AOF: false})
	n := startNode(t, func(c *config.Config) { c.Broker = r.URL() })
	rec := newRecorder()
	c := client.New(n.url(), client.Options{Backoff: fastBackoff, OnState: rec.onState})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctxT(t), "lost", client.SubscribeOptions{OnPublication: rec.onPublication, OnGap: rec.onGap}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		n.publish(t, "lost", i)
	}
	rec.wait(t, "three publications", func() bool { return len(rec.pubs) == 3 })
	r.Kill()
	r.Restart(t)
	// Publish until the node reaches Redis again.
	var off uint64
	for off == 0 {
		res, err := n.api(t, "/api/publish", map[string]any{"channel": "lost", "data": "after"})
		if err == nil {
			off = uint64(res["offset"].(float64))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec.wait(t, "the publication of the new epoch", func() bool { return len(rec.pubs) == 4 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.gaps) != 1 || rec.gaps[0].Reason != client.GapReset || rec.gaps[0].From.Offset != 3 || rec.gaps[0].To.Epoch == rec.gaps[0].From.Epoch {
		t.Fatalf("gaps %+v", rec.gaps)
	}
	if p := rec.pubs[3]; p.Offset != off || p.Epoch != rec.gaps[0].To.Epoch {
		t.Fatalf("publication after the reset %+v, want offset %d of epoch %s", p, off, rec.gaps[0].To.Epoch)
	}
}

// TestHistoryAndPresence: the read commands answer over the client.
func TestHistoryAndPresence(t *testing.T) {
	n := startNode(t, nil)
	c := client.New(n.url(), client.Options{})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctxT(t), "h", client.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := c.Publish(ctxT(t), "h", i); err != nil {
			t.Fatal(err)
		}
	}
	h, err := c.History(ctxT(t), "h", client.HistoryOptions{Since: &client.Position{Offset: 2, Epoch: ""}, Limit: 2})
	var se *client.Error
	if !errors.As(err, &se) || se.Code != 412 {
		t.Fatalf("history from another epoch: %v", err)
	}
	all, err := c.History(ctxT(t), "h", client.HistoryOptions{})
	if err != nil || len(all.Publications) != 5 || all.Position.Offset != 5 {
		t.Fatalf("history %+v %v", all, err)
	}
	h, err = c.History(ctxT(t), "h", client.HistoryOptions{Since: &client.Position{Offset: 2, Epoch: all.Position.Epoch}, Limit: 2})
	if err != nil || len(h.Publications) != 2 || h.Publications[0].Offset != 3 || string(h.Publications[1].Data) != "3" {
		t.Fatalf("history since 2, limit 2: %+v %v", h, err)
	}
	p, err := c.Presence(ctxT(t), "h")
	if err != nil || p.NumClients != 1 || p.Clients[0].Client != c.Info().Client {
		t.Fatalf("presence %+v %v", p, err)
	}
	if _, err := c.Subscribe(ctxT(t), "bad name", client.SubscribeOptions{}); !errors.As(err, &se) || se.Code != 422 {
		t.Fatalf("subscribe to an invalid channel: %v", err)
	}
	if _, err := c.Subscribe(ctxT(t), "h", client.SubscribeOptions{}); !errors.Is(err, client.ErrAlreadySubscribed) {
		t.Fatalf("second subscribe: %v", err)
	}
}

// TestHandshakeRefusedStops: a handshake the server refuses for good (a
// wrong path: 404) stops the client instead of retrying forever.
func TestHandshakeRefusedStops(t *testing.T) {
	n := startNode(t, nil)
	c := client.New("ws://"+n.addr+"/nowhere", client.Options{Backoff: fastBackoff})
	defer c.Close()
	err := c.Connect(ctxT(t))
	if err == nil || c.State() != client.StateDisconnected {
		t.Fatalf("Connect = %v, state %v", err, c.State())
	}
}

// TestUnsubscribeStopsDelivery: after Unsubscribe, nothing more of the
// channel arrives, while another subscription carries on.
func TestUnsubscribeStopsDelivery(t *testing.T) {
	n := startNode(t, nil)
	gone, kept := newRecorder(), newRecorder()
	c := client.New(n.url(), client.Options{})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctxT(t), "gone", client.SubscribeOptions{OnPublication: gone.onPublication})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctxT(t), "kept", client.SubscribeOptions{OnPublication: kept.onPublication}); err != nil {
		t.Fatal(err)
	}
	n.publish(t, "gone", 1)
	gone.wait(t, "the first publication", func() bool { return len(gone.pubs) == 1 })
	if err := sub.Unsubscribe(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := sub.Unsubscribe(ctxT(t)); err != nil {
		t.Fatalf("second Unsubscribe: %v", err)
	}
	n.publish(t, "gone", 2)
	n.publish(t, "kept", 1) // published after, on the same connection: arrives after
	kept.wait(t, "the other channel", func() bool { return len(kept.pubs) == 1 })
	gone.mu.Lock()
	defer gone.mu.Unlock()
	if len(gone.pubs) != 1 {
		t.Fatalf("unsubscribed channel delivered %+v", gone.pubs)
	}
	if sub.Position().Offset != 1 || sub.Channel() != "gone" {
		t.Fatalf("position %+v", sub.Position())
	}
}

// TestSubscribeSince starts from a position the application kept: what
// came after it is delivered first; a position history no longer holds
// gives a gap.
func TestSubscribeSince(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.HistorySize = 3 })
	c := client.New(n.url(), client.Options{})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		n.publish(t, "since", i)
	}
	h, err := c.History(ctxT(t), "since", client.HistoryOptions{Limit: -1})
	if err != nil || len(h.Publications) != 0 || h.Position.Offset != 5 {
		t.Fatalf("history without publications: %+v %v", h, err)
	}
	rec := newRecorder()
	sub, err := c.Subscribe(ctxT(t), "since", client.SubscribeOptions{
		OnPublication: rec.onPublication, OnGap: rec.onGap,
		Since: &client.Position{Offset: 3, Epoch: h.Position.Epoch},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "4 and 5", func() bool { return len(rec.pubs) == 2 })
	rec.mu.Lock()
	if rec.pubs[0].Offset != 4 || rec.pubs[1].Offset != 5 || len(rec.gaps) != 0 || sub.Position().Offset != 5 {
		t.Fatalf("publications %+v, gaps %+v", rec.pubs, rec.gaps)
	}
	rec.mu.Unlock()
	old := newRecorder()
	for i := 1; i <= 5; i++ {
		n.publish(t, "since-other", i)
	}
	h, _ = c.History(ctxT(t), "since-other", client.HistoryOptions{Limit: -1})
	_, err = c.Subscribe(ctxT(t), "since-other", client.SubscribeOptions{
		OnGap: old.onGap,
		Since: &client.Position{Offset: 1, Epoch: h.Position.Epoch},
	})
	if err != nil {
		t.Fatal(err)
	}
	old.wait(t, "the gap", func() bool { return len(old.gaps) == 1 })
	old.mu.Lock()
	defer old.mu.Unlock()
	if g := old.gaps[0]; g.Reason != client.GapNotRecovered || g.From.Offset != 1 || g.To.Offset != 5 {
		t.Fatalf("gap %+v", g)
	}
}
