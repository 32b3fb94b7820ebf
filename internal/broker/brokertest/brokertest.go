// Package brokertest is the conformance suite every broker.Broker
// implementation runs against a real instance of its backend: offsets,
// order, history queries, node-level subscription and idempotent publish.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// collector is a broker.Handler that records deliveries.
type collector struct {
	mu     sync.Mutex
	pubs   map[string][]broker.Publication
	events map[string][]string
	seen   chan struct{}
}

func newCollector() *collector {
	return &collector{pubs: map[string][]broker.Publication{}, events: map[string][]string{}, seen: make(chan struct{}, 1)}
}

func (c *collector) HandleEvent(channel string, data []byte) {
	c.mu.Lock()
	c.events[channel] = append(c.events[channel], string(data))
	c.mu.Unlock()
	select {
	case c.seen <- struct{}{}:
	default:
	}
}

func (c *collector) HandlePublication(channel string, pub broker.Publication, epoch string) {
	c.mu.Lock()
	c.pubs[channel] = append(c.pubs[channel], pub)
	c.mu.Unlock()
	select {
	case c.seen <- struct{}{}:
	default:
	}
}

func (c *collector) count(channel string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pubs[channel])
}

func (c *collector) waitCount(t *testing.T, channel string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for c.count(channel) < n {
		select {
		case <-c.seen:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("channel %s: %d deliveries, want %d", channel, c.count(channel), n)
		}
	}
}

// Run runs the suite. newBroker returns a fresh, not yet started broker; each
// subtest uses channel names of its own.
func Run(t *testing.T, newBroker func(t *testing.T) broker.Broker) {
	ctx := context.Background()
	start := func(t *testing.T) (broker.Broker, *collector) {
		b := newBroker(t)
		c := newCollector()
		if err := b.Start(ctx, c); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		return b, c
	}
	opts := broker.PublishOptions{HistorySize: 5, HistoryTTL: time.Minute}
	ch := func(t *testing.T) string { return "bt-" + t.Name() }

	t.Run("OffsetsGrowByOne", func(t *testing.T) {
		b, _ := start(t)
		var epoch string
		for i := 1; i <= 10; i++ {
			pos, err := b.Publish(ctx, ch(t), []byte(fmt.Sprint(i)), opts)
			if err != nil {
				t.Fatal(err)
			}
			if pos.Offset != uint64(i) {
				t.Fatalf("publish %d got offset %d", i, pos.Offset)
			}
			if epoch == "" {
				epoch = pos.Epoch
			}
			if pos.Epoch == "" || pos.Epoch != epoch {
				t.Fatalf("epoch changed from %q to %q", epoch, pos.Epoch)
			}
		}
	})

	t.Run("DeliversOnlyWhenSubscribed", func(t *testing.T) {
		b, c := start(t)
		name := ch(t)
		if _, err := b.Publish(ctx, name, []byte(`"before"`), opts); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, name); err != nil { // idempotent
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			if _, err := b.Publish(ctx, name, []byte(fmt.Sprint(i)), opts); err != nil {
				t.Fatal(err)
			}
		}
		c.waitCount(t, name, 20)
		c.mu.Lock()
		for i, p := range c.pubs[name] {
			if p.Offset != uint64(i+2) || string(p.Data) != fmt.Sprint(i) {
				t.Fatalf("delivery %d: offset %d data %s", i, p.Offset, p.Data)
			}
		}
		c.mu.Unlock()
		if err := b.Unsubscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, name, []byte(`"after"`), opts); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if n := c.count(name); n != 20 {
			t.Fatalf("%d deliveries after unsubscribe, want 20", n)
		}
	})

	t.Run("History", func(t *testing.T) {
		b, _ := start(t)
		name := ch(t)
		var top broker.Position
		for i := 1; i <= 8; i++ {
			pos, err := b.Publish(ctx, name, []byte(fmt.Sprint(i)), opts)
			if err != nil {
				t.Fatal(err)
			}
			top = pos
		}
		offsets := func(r broker.HistoryResult) string {
			s := ""
			for _, p := range r.Publications {
				s += fmt.Sprint(p.Offset, " ")
			}
			return s
		}
		tests := []struct {
			name string
			q    broker.HistoryQuery
			want string
		}{
			{"position only", broker.HistoryQuery{}, ""},
			{"all kept", broker.HistoryQuery{Limit: -1}, "4 5 6 7 8 "},
			{"limit", broker.HistoryQuery{Limit: 2}, "4 5 "},
			{"reverse", broker.HistoryQuery{Limit: 2, Reverse: true}, "8 7 "},
			{"since", broker.HistoryQuery{Limit: -1, Since: &broker.Position{Offset: 6, Epoch: top.Epoch}}, "7 8 "},
			{"since top", broker.HistoryQuery{Limit: -1, Since: &top}, ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r, err := b.History(ctx, name, tc.q)
				if err != nil {
					t.Fatal(err)
				}
				if got := offsets(r); got != tc.want {
					t.Fatalf("offsets %q, want %q", got, tc.want)
				}
				if r.Position != top {
					t.Fatalf("position %+v, want %+v", r.Position, top)
				}
			})
		}
		_, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1, Since: &broker.Position{Offset: 1, Epoch: "other"}})
		if !errors.Is(err, broker.ErrEpochMismatch) {
			t.Fatalf("other epoch: err = %v, want ErrEpochMismatch", err)
		}
	})

	t.Run("EventsAreDeliveredNotStored", func(t *testing.T) {
		b, c := start(t)
		name := ch(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		if err := b.PublishEvent(ctx, name, []byte(`{"join":1}`)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			c.mu.Lock()
			n := len(c.events[name])
			c.mu.Unlock()
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("event not delivered")
			}
			time.Sleep(5 * time.Millisecond)
		}
		r, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Position.Offset != 0 || len(r.Publications) != 0 {
			t.Fatalf("an event was stored: %+v", r)
		}
	})

	t.Run("EmptyChannelPosition", func(t *testing.T) {
		b, _ := start(t)
		r, err := b.History(ctx, ch(t), broker.HistoryQuery{Limit: -1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Position.Offset != 0 || len(r.Publications) != 0 {
			t.Fatalf("empty channel: %+v", r)
		}
	})

	t.Run("HistorySizeTrims", func(t *testing.T) {
		b, _ := start(t)
		name := ch(t)
		tests := []struct {
			size int
			want string // offsets kept after publishing with size
		}{
			{3, "1"}, {3, "1 2"}, {3, "1 2 3"}, {3, "2 3 4"}, // trimmed to 3
			{2, "4 5"}, // shrinking keeps the newest
			{0, ""},    // size 0 keeps none
			{2, "7"},   // and offsets went on
		}
		for i, tc := range tests {
			if _, err := b.Publish(ctx, name, []byte(`0`), broker.PublishOptions{HistorySize: tc.size}); err != nil {
				t.Fatal(err)
			}
			r, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1})
			if err != nil {
				t.Fatal(err)
			}
			if got := offsetList(r.Publications); got != tc.want || r.Position.Offset != uint64(i+1) {
				t.Fatalf("publication %d with size %d: kept %q at offset %d, want %q at %d", i+1, tc.size, got, r.Position.Offset, tc.want, i+1)
			}
		}
	})

	t.Run("HistoryTTLExpires", func(t *testing.T) {
		// Real time with a wide margin: only what must have expired is
		// checked after sleeping, so a slow machine cannot fail it.
		b, _ := start(t)
		name := ch(t)
		const ttl = 300 * time.Millisecond
		top, err := b.Publish(ctx, name, []byte(`1`), broker.PublishOptions{HistorySize: 10, HistoryTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * ttl)
		r, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Publications) != 0 || r.Position != top {
			t.Fatalf("after the TTL: %d publications at %+v, want none at %+v", len(r.Publications), r.Position, top)
		}
		pos, err := b.Publish(ctx, name, []byte(`2`), broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if pos.Offset != 2 || pos.Epoch != top.Epoch {
			t.Fatalf("publish after the TTL: %+v, want offset 2 in epoch %s", pos, top.Epoch)
		}
	})

	t.Run("EmptyChannelKeepsEpoch", func(t *testing.T) {
		// A client that read the position of an empty channel must be able
		// to recover from it once publications arrive.
		b, _ := start(t)
		name := ch(t)
		r, err := b.History(ctx, name, broker.HistoryQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Position.Epoch == "" {
			t.Fatal("empty channel has no epoch")
		}
		pos, err := b.Publish(ctx, name, []byte(`1`), opts)
		if err != nil {
			t.Fatal(err)
		}
		if pos != (broker.Position{Offset: 1, Epoch: r.Position.Epoch}) {
			t.Fatalf("first publication at %+v, want offset 1 in epoch %s", pos, r.Position.Epoch)
		}
		h, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1, Since: &r.Position})
		if err != nil || offsetList(h.Publications) != "1" {
			t.Fatalf("since the empty position: %+v %v", h, err)
		}
	})

	t.Run("DataAndTimeRoundTrip", func(t *testing.T) {
		b, c := start(t)
		name := ch(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		data := `{"text":"a:b:c\n\u00e9\u2603 ","n":[1,2]}`
		before := time.Now()
		if _, err := b.Publish(ctx, name, []byte(data), opts); err != nil {
			t.Fatal(err)
		}
		c.waitCount(t, name, 1)
		r, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1})
		if err != nil || len(r.Publications) != 1 {
			t.Fatalf("history %+v %v", r, err)
		}
		c.mu.Lock()
		delivered := c.pubs[name][0]
		c.mu.Unlock()
		for where, p := range map[string]broker.Publication{"delivered": delivered, "history": r.Publications[0]} {
			if string(p.Data) != data {
				t.Errorf("%s data %q, want %q", where, p.Data, data)
			}
			// Brokers may take the time from their server's clock: allow
			// for clock skew between it and this process.
			if d := p.Time.Sub(before); d < -time.Minute || d > time.Minute {
				t.Errorf("%s time %v, published at %v", where, p.Time, before)
			}
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		// A call whose context is done returns at once with an error
		// wrapping ctx.Err(), even when it could answer without I/O, so
		// that the engine's per-command deadlines hold for every backend.
		// Unsubscribe is left out: a node leaving a channel releases local
		// state and may do so whatever its context.
		b, _ := start(t)
		name := ch(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		calls := map[string]func() error{
			"Subscribe": func() error { return b.Subscribe(cctx, name) },
			"Publish": func() error {
				_, err := b.Publish(cctx, name, []byte(`1`), opts)
				return err
			},
			"PublishEvent": func() error { return b.PublishEvent(cctx, name, []byte(`1`)) },
			"History": func() error {
				_, err := b.History(cctx, name, broker.HistoryQuery{Limit: -1})
				return err
			},
		}
		if c, ok := b.(broker.Controller); ok {
			calls["PublishControl"] = func() error { return c.PublishControl(cctx, []byte(`1`)) }
		}
		checkCancelled(t, calls)
	})

	t.Run("ConcurrentPublishersKeepOrder", func(t *testing.T) {
		b, c := start(t)
		name := ch(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for p := 0; p < 4; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					if _, err := b.Publish(ctx, name, []byte(`0`), opts); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		c.waitCount(t, name, 200)
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, p := range c.pubs[name] {
			if p.Offset != uint64(i+1) {
				t.Fatalf("delivery %d has offset %d", i, p.Offset)
			}
		}
	})

	t.Run("IdempotentPublish", func(t *testing.T) {
		b, c := start(t)
		name := ch(t)
		if err := b.Subscribe(ctx, name); err != nil {
			t.Fatal(err)
		}
		keyed := opts
		keyed.IdempotencyKey, keyed.IdempotencyWindow = "k-1", time.Minute
		first, err := b.Publish(ctx, name, []byte(`"first"`), keyed)
		if err != nil {
			t.Fatal(err)
		}
		// A repeat, even with other data, publishes nothing and answers
		// the original position.
		for _, data := range []string{`"first"`, `"again"`} {
			pos, err := b.Publish(ctx, name, []byte(data), keyed)
			if !errors.Is(err, broker.ErrDuplicate) || pos != first {
				t.Fatalf("repeat: %+v, %v; want %+v and ErrDuplicate", pos, err, first)
			}
		}
		// Concurrent repeats of a new key store exactly one publication.
		keyed.IdempotencyKey = "k-2"
		const n = 8
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			stored int
			seen   = map[broker.Position]bool{}
		)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pos, err := b.Publish(ctx, name, []byte(`"concurrent"`), keyed)
				if err != nil && !errors.Is(err, broker.ErrDuplicate) {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					stored++
				}
				seen[pos] = true
			}()
		}
		wg.Wait()
		if stored != 1 || len(seen) != 1 || !seen[broker.Position{Offset: 2, Epoch: first.Epoch}] {
			t.Fatalf("concurrent repeats: %d stored, positions %v; want 1 at offset 2", stored, seen)
		}
		// The same key on another channel is another publication.
		other, err := b.Publish(ctx, name+"-other", []byte(`"other"`), keyed)
		if err != nil || other.Offset != 1 {
			t.Fatalf("same key on another channel: %+v, %v; want offset 1", other, err)
		}
		// Deliveries: the two keyed publications once each, then an
		// unkeyed one that proves nothing else is on the way.
		last, err := b.Publish(ctx, name, []byte(`"last"`), opts)
		if err != nil || last.Offset != 3 {
			t.Fatalf("unkeyed publish after repeats: %+v, %v; want offset 3", last, err)
		}
		c.waitCount(t, name, 3)
		c.mu.Lock()
		got := offsetList(c.pubs[name])
		c.mu.Unlock()
		if got != "1 2 3" {
			t.Fatalf("delivered offsets %q, want \"1 2 3\"", got)
		}
		r, err := b.History(ctx, name, broker.HistoryQuery{Limit: -1})
		if err != nil || offsetList(r.Publications) != "1 2 3" || string(r.Publications[0].Data) != `"first"` {
			t.Fatalf("history %+v, %v; want offsets 1 2 3 with the first data", r, err)
		}
	})

	t.Run("IdempotencyWindowExpires", func(t *testing.T) {
		// Real time with a wide margin, as HistoryTTLExpires: only that the
		// key is forgotten long after the window is checked.
		b, _ := start(t)
		name := ch(t)
		const window = 300 * time.Millisecond
		keyed := opts
		keyed.IdempotencyKey, keyed.IdempotencyWindow = "k", window
		first, err := b.Publish(ctx, name, []byte(`1`), keyed)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * window)
		pos, err := b.Publish(ctx, name, []byte(`2`), keyed)
		if err != nil || pos != (broker.Position{Offset: first.Offset + 1, Epoch: first.Epoch}) {
			t.Fatalf("after the window: %+v, %v; want a new publication after %+v", pos, err, first)
		}
		again, err := b.Publish(ctx, name, []byte(`3`), keyed)
		if !errors.Is(err, broker.ErrDuplicate) || again != pos {
			t.Fatalf("repeat of the new publication: %+v, %v; want %+v and ErrDuplicate", again, err, pos)
		}
	})
}

// offsetList formats the offsets of pubs as "1 2 3".
func offsetList(pubs []broker.Publication) string {
	s := make([]string, len(pubs))
	for i, p := range pubs {
		s[i] = fmt.Sprint(p.Offset)
	}
	return strings.Join(s, " ")
}

// checkCancelled runs each call and fails unless it returns an error
// wrapping context.Canceled.
func checkCancelled(t *testing.T, calls map[string]func() error) {
	t.Helper()
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want one wrapping context.Canceled", name, err)
		}
	}
}
