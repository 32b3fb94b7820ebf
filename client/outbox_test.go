package client_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/client"
	"github.com/switchboardhq/switchboard/internal/config"
)

// observe subscribes a second client to channel and records what it gets.
func observe(t *testing.T, n *node, channel string) *recorder {
	t.Helper()
	rec := newRecorder()
	o := client.New(n.url(), client.Options{})
	t.Cleanup(func() { o.Close() })
	if err := o.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Subscribe(ctxT(t), channel, client.SubscribeOptions{OnPublication: rec.onPublication, OnGap: rec.onGap}); err != nil {
		t.Fatal(err)
	}
	return rec
}

// publishInOrder starts count Publish calls, each in its own goroutine but
// one after the other into the outbox (the next starts once the previous
// is in it), and returns their results in call order once all returned.
func publishInOrder(t *testing.T, c *client.Client, channel string, count int) func() []client.PublishResult {
	results := make([]client.PublishResult, count)
	var wg sync.WaitGroup
	for i := range count {
		before := len(c.Outbox())
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Publish(ctxT(t), channel, i)
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
		for len(c.Outbox()) == before {
			runtime.Gosched() // the publication is not in the outbox yet
		}
	}
	return func() []client.PublishResult { wg.Wait(); return results }
}

// TestOutboxSendsOfflinePublicationsInOrder publishes 50 times while the
// client is away: each waits in the outbox (queued), goes out on the next
// connection, and an observer receives each once, in the order of the
// Publish calls.
func TestOutboxSendsOfflinePublicationsInOrder(t *testing.T) {
	n := startNode(t, nil)
	seen := observe(t, n, "out")
	g := newGate()
	rec := newRecorder()
	c := client.New("", client.Options{
		Backoff:  fastBackoff,
		OnState:  rec.onState,
		OnOutbox: rec.onOutbox,
		Endpoint: heldEndpoint(g, n.url()),
	})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	n.disconnect(t, c.Info().Client, true)
	rec.wait(t, "connecting", func() bool { return rec.states[len(rec.states)-1].State == client.StateConnecting })

	const count = 50
	results := publishInOrder(t, c, "out", count)
	box := c.Outbox()
	if len(box) != count {
		t.Fatalf("%d in the outbox, want %d", len(box), count)
	}
	for i, e := range box {
		if e.State != client.OutboxQueued || string(e.Data) != fmt.Sprint(i) || e.Key == "" {
			t.Fatalf("outbox entry %d: %+v", i, e)
		}
	}
	g.release()
	res := results()
	for i, r := range res {
		if r.Offset != uint64(i+1) || r.Key != box[i].Key {
			t.Fatalf("publication %d acknowledged as %+v, want offset %d and key %s", i, r, i+1, box[i].Key)
		}
	}
	seen.wait(t, "every publication", func() bool { return len(seen.pubs) == count })
	if len(c.Outbox()) != 0 {
		t.Fatalf("outbox not empty: %+v", c.Outbox())
	}
	seen.mu.Lock()
	for i, p := range seen.pubs {
		if p.Offset != uint64(i+1) || string(p.Data) != fmt.Sprint(i) {
			t.Fatalf("observer got %+v at %d", p, i)
		}
	}
	seen.mu.Unlock()
	rec.wait(t, "every acked event", func() bool {
		acked := 0
		for _, e := range rec.outbox {
			if e.State == client.OutboxAcked {
				acked++
			}
		}
		return acked == count
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	states := map[string][]string{}
	for _, e := range rec.outbox {
		states[e.Key] = append(states[e.Key], e.State.String())
	}
	for _, e := range box {
		if got := states[e.Key]; !slices.Equal(got, []string{"queued", "sent", "acked"}) {
			t.Fatalf("entry %s went through %v", e.Key, got)
		}
	}
}

// TestOutboxWithdrawAndBound: a queued publication whose ctx ends leaves
// the outbox; a full outbox refuses at once; Close fails what waits.
func TestOutboxWithdrawAndBound(t *testing.T) {
	c := client.New("ws://127.0.0.1:1/ws", client.Options{OutboxSize: 2})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 3)
	go func() { _, err := c.Publish(ctx, "w", 1); errc <- err }()
	for len(c.Outbox()) == 0 {
		runtime.Gosched()
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("withdrawn publish: %v", err)
	}
	if len(c.Outbox()) != 0 {
		t.Fatalf("outbox %+v", c.Outbox())
	}
	for i := range 2 {
		go func() { _, err := c.Publish(context.Background(), "w", i); errc <- err }()
	}
	for len(c.Outbox()) < 2 {
		runtime.Gosched()
	}
	if _, err := c.Publish(context.Background(), "w", 3); !errors.Is(err, client.ErrOutboxFull) {
		t.Fatalf("publish into a full outbox: %v", err)
	}
	big := make([]byte, 70000)
	if _, err := c.Publish(context.Background(), "w", string(big)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("publish over the size limit: %v", err)
	}
	c.Close()
	for range 2 {
		if err := <-errc; !errors.Is(err, client.ErrClosed) {
			t.Fatalf("publish waiting at Close: %v", err)
		}
	}
}

// TestOutboxResendIsIdempotent loses the acknowledgement of a publication
// the server did publish (a proxy drops what the node sends, then cuts the
// connection): the client sends it again with the same key on the next
// connection, and the channel holds it once (the server honours the key).
func TestOutboxResendIsIdempotent(t *testing.T) {
	n := startNode(t, nil)
	seen := observe(t, n, "idem")
	p := startProxy(t, n.addr)
	rec := newRecorder()
	c := client.New(p.url(), client.Options{Backoff: fastBackoff, OnState: rec.onState, OnOutbox: rec.onOutbox})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	p.setDrop(true)
	done := make(chan client.PublishResult, 1)
	go func() {
		res, err := c.Publish(ctxT(t), "idem", "once")
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	seen.wait(t, "the publication", func() bool { return len(seen.pubs) == 1 })
	p.cut()
	p.setDrop(false)
	res := <-done
	n.publish(t, "idem", "marker")
	seen.wait(t, "the marker", func() bool { return string(seen.pubs[len(seen.pubs)-1].Data) == `"marker"` })

	rec.wait(t, "the acked event", func() bool {
		return len(rec.outbox) > 0 && rec.outbox[len(rec.outbox)-1].State == client.OutboxAcked
	})
	rec.mu.Lock()
	var states []string
	for _, e := range rec.outbox {
		if e.Key != res.Key {
			t.Fatalf("outbox event for another key: %+v", e)
		}
		states = append(states, e.State.String())
	}
	rec.mu.Unlock()
	if want := []string{"queued", "sent", "queued", "sent", "acked"}; !slices.Equal(states, want) {
		t.Fatalf("outbox states %v, want %v", states, want)
	}
	seen.mu.Lock()
	copies := len(seen.pubs) - 1
	first := seen.pubs[0].Offset
	seen.mu.Unlock()
	if copies != 1 || res.Offset != first {
		t.Fatalf("%d copies published; acknowledged offset %d, first copy at %d", copies, res.Offset, first)
	}
}

// TestOutboxUnderRateLimit flushes 60 offline publications to two channels
// into a server that allows 20 commands a second: the refused ones (429)
// are sent again later, and each channel still gets its publications once
// each, in order.
func TestOutboxUnderRateLimit(t *testing.T) {
	n := startNode(t, func(c *config.Config) { c.CommandRate = 20; c.CommandBurst = 10 })
	seenA, seenB := observe(t, n, "rate-a"), observe(t, n, "rate-b")
	rec := newRecorder()
	c := client.New(n.url(), client.Options{Backoff: fastBackoff, OnOutbox: rec.onOutbox})
	defer c.Close()
	results := make(chan error, 60)
	for i := range 60 {
		ch := "rate-a"
		if i%2 == 1 {
			ch = "rate-b"
		}
		before := len(c.Outbox())
		go func() { _, err := c.Publish(ctxT(t), ch, i); results <- err }()
		for len(c.Outbox()) == before {
			runtime.Gosched()
		}
	}
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for range 60 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	for i, seen := range []*recorder{seenA, seenB} {
		seen.wait(t, "30 publications", func() bool { return len(seen.pubs) == 30 })
		seen.mu.Lock()
		for j, p := range seen.pubs {
			if string(p.Data) != fmt.Sprint(2*j+i) {
				t.Fatalf("channel %d: publication %d carries %s", i, j, p.Data)
			}
		}
		seen.mu.Unlock()
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	refused := 0
	for _, e := range rec.outbox {
		if e.State == client.OutboxQueued && e.Attempts > 0 {
			refused++
		}
	}
	t.Logf("%d refusals by the rate limit, sent again", refused)
	if refused == 0 {
		t.Fatal("the rate limit never refused a publication: the test shows nothing")
	}
}
