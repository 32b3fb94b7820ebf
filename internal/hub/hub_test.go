package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// recorder is an in-process hub.Transport that keeps what is written. It can
// be blocked to play a client that does not read.
type recorder struct {
	mu      sync.Mutex
	msgs    []map[string]any
	closed  *protocol.Disconnect
	writes  int
	block   chan struct{} // when non-nil, WriteMessages waits on it
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) Name() string { return "test" }

func (r *recorder) WriteMessages(msgs []hub.Message) error {
	r.mu.Lock()
	block := r.block
	r.mu.Unlock()
	if block != nil {
		<-block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	for _, m := range msgs {
		var v map[string]any
		if err := json.Unmarshal(m.Data, &v); err != nil {
			panic(fmt.Sprintf("hub wrote invalid JSON %q", m.Data))
		}
		r.msgs = append(r.msgs, v)
	}
	r.notify()
	return nil
}

func (r *recorder) Close(d protocol.Disconnect) error {
	r.mu.Lock()
	r.closed = &d
	r.notify()
	r.mu.Unlock()
	return nil
}

func (r *recorder) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor polls cond (under r.mu) until it holds or 5 s pass.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func newHub(t *testing.T, cfg hub.Config) *hub.Hub {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(prometheus.NewRegistry())
	}
	cfg.ClientPublish = true
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 10
	}
	h := hub.New(cfg, memory.New(memory.Options{}), memory.NewPresence())
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	return h
}

func send(s *hub.Session, cmd string) { s.HandleMessage([]byte(cmd)) }

func TestSubscribePublishUnsubscribe(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"subscribe","channel":"c"}`)
	for i := 0; i < 3; i++ {
		if _, err := h.Publish(context.Background(), "c", []byte(fmt.Sprint(i)), "api"); err != nil {
			t.Fatal(err)
		}
	}
	send(s, `{"id":2,"command":"unsubscribe","channel":"c"}`)
	if _, err := h.Publish(context.Background(), "c", []byte(`"late"`), "api"); err != nil {
		t.Fatal(err)
	}
	send(s, `{"id":3,"command":"ping"}`)
	r.waitFor(t, "6 messages", func() bool { return len(r.msgs) == 6 })
	want := []string{
		`map[id:1 result:map[channel:c epoch:%s offset:0]]`,
		`map[channel:c data:0 offset:1]`,
		`map[channel:c data:1 offset:2]`,
		`map[channel:c data:2 offset:3]`,
		`map[id:2 result:map[]]`,
	}
	epoch := r.msgs[0]["result"].(map[string]any)["epoch"]
	for i, w := range want {
		if i == 0 {
			w = fmt.Sprintf(w, epoch)
		}
		if got := fmt.Sprint(r.msgs[i]); got != w {
			t.Errorf("message %d: got %s, want %s", i, got, w)
		}
	}
	if got := fmt.Sprint(r.msgs[5]); got != `map[id:3 result:map[]]` {
		t.Errorf("ping reply %s", got)
	}
	if info := h.Info(); info.Subscriptions != 0 || info.Channels != 0 || info.Connections != 1 {
		t.Errorf("info after unsubscribe: %+v", info)
	}
}

func TestOrderPerChannelUnderConcurrentPublishers(t *testing.T) {
	h := newHub(t, hub.Config{QueueMaxMessages: 100000, QueueMaxBytes: 64 << 20})
	const subs, publishers, each = 20, 4, 250
	recs := make([]*recorder, subs)
	for i := range recs {
		recs[i] = newRecorder()
		s := h.NewSession(recs[i], hub.SessionInfo{})
		send(s, `{"command":"subscribe","channel":"ordered"}`)
	}
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := h.Publish(context.Background(), "ordered", []byte(`1`), "api"); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range recs {
		r.waitFor(t, "all publications", func() bool { return len(r.msgs) == publishers*each })
		for i, m := range r.msgs {
			if m["offset"] != float64(i+1) {
				t.Fatalf("message %d has offset %v: out of order or lost", i, m["offset"])
			}
		}
	}
}

func TestQueueOverflowClosesOnlyTheSlowSession(t *testing.T) {
	h := newHub(t, hub.Config{QueueMaxMessages: 10})
	slow, fast := newRecorder(), newRecorder()
	slow.block = make(chan struct{})
	ss := h.NewSession(slow, hub.SessionInfo{})
	fs := h.NewSession(fast, hub.SessionInfo{})
	send(ss, `{"command":"subscribe","channel":"q"}`)
	send(fs, `{"command":"subscribe","channel":"q"}`)
	for i := 0; i < 50; i++ {
		if _, err := h.Publish(context.Background(), "q", []byte(`"m"`), "api"); err != nil {
			t.Fatal(err)
		}
		// The fast session keeps up; the slow one's writer is stuck in its
		// first write while its queue fills.
		fast.waitFor(t, "fast delivery", func() bool { return len(fast.msgs) == i+1 })
	}
	close(slow.block)
	slow.waitFor(t, "slow consumer close", func() bool { return slow.closed != nil })
	if *slow.closed != protocol.DisconnectSlowConsumer {
		t.Fatalf("closed with %v", *slow.closed)
	}
	if fast.closed != nil {
		t.Fatal("fast session was closed")
	}
	// The slow session is gone from the channel; the fast one still receives.
	deadline := time.Now().Add(5 * time.Second)
	for h.Info().Connections != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.Info().Subscriptions; n != 1 {
		t.Fatalf("subscriptions after overflow: %d", n)
	}
}

func TestQueueByteBound(t *testing.T) {
	h := newHub(t, hub.Config{QueueMaxBytes: 1000})
	r := newRecorder()
	r.block = make(chan struct{})
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"command":"subscribe","channel":"b"}`)
	big := []byte(`"` + string(make([]byte, 0)) + fmt.Sprintf("%0600d", 0) + `"`)
	for i := 0; i < 3; i++ {
		_, _ = h.Publish(context.Background(), "b", big, "api")
	}
	close(r.block)
	r.waitFor(t, "close", func() bool { return r.closed != nil })
	if *r.closed != protocol.DisconnectSlowConsumer {
		t.Fatalf("closed with %v", *r.closed)
	}
}

func TestWriterCoalesces(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	r.block = make(chan struct{})
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"subscribe","channel":"w"}`) // first write blocks
	for i := 0; i < 100; i++ {
		_, _ = h.Publish(context.Background(), "w", []byte(`0`), "api")
	}
	close(r.block)
	r.waitFor(t, "101 messages", func() bool { return len(r.msgs) == 101 })
	if r.writes > 3 {
		t.Fatalf("%d writes for 101 queued messages: not coalesced", r.writes)
	}
}

func TestCloseFlushesQueueFirst(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"command":"subscribe","channel":"f"}`)
	r.mu.Lock()
	r.block = make(chan struct{})
	r.mu.Unlock()
	for i := 0; i < 5; i++ {
		_, _ = h.Publish(context.Background(), "f", []byte(`0`), "api")
	}
	s.Close(protocol.DisconnectShutdown)
	r.mu.Lock()
	close(r.block)
	r.block = nil
	r.mu.Unlock()
	r.waitFor(t, "close", func() bool { return r.closed != nil })
	if len(r.msgs) != 5 || *r.closed != protocol.DisconnectShutdown {
		t.Fatalf("got %d messages, closed %v", len(r.msgs), r.closed)
	}
}

func TestDisconnectUnknownClient(t *testing.T) {
	h := newHub(t, hub.Config{})
	if err := h.Disconnect("nope", "", false); err != hub.ErrNotFound {
		t.Fatalf("err = %v", err)
	}
}

func TestShutdownClosesEverySession(t *testing.T) {
	cfg := hub.Config{Metrics: metrics.New(prometheus.NewRegistry())}
	h := hub.New(cfg, memory.New(memory.Options{}), memory.NewPresence())
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := []*recorder{newRecorder(), newRecorder()}
	for _, r := range recs {
		h.NewSession(r, hub.SessionInfo{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.closed == nil || *r.closed != protocol.DisconnectShutdown {
			t.Fatalf("closed with %v", r.closed)
		}
	}
	// A session that arrives during shutdown is closed at once.
	late := newRecorder()
	h.NewSession(late, hub.SessionInfo{})
	late.waitFor(t, "late close", func() bool { return late.closed != nil })
}

// waitMetric waits until get returns want.
func waitMetric(t *testing.T, what string, get func() float64, want float64) {
	t.Helper()
	waitCond(t, what, func() bool { return get() == want })
}

// waitHolding waits until a writer waits out write_delay on the fake
// clock: the hub's three tickers (sweep, presence, busy) and one timer.
func waitHolding(t *testing.T, clock *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 4); err != nil {
		t.Fatalf("no writer waits out write_delay: %v", err)
	}
}

func TestWriteDelayBatchesABusyConnection(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHub(t, hub.Config{WriteDelay: 100 * time.Millisecond, Clock: clock})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	clock.Advance(time.Millisecond)
	send(s, `{"id":1,"command":"subscribe","channel":"w"}`) // first write: at once
	r.waitFor(t, "reply", func() bool { return r.writes == 1 })
	for i := 0; i < 20; i++ {
		_, _ = h.Publish(context.Background(), "w", []byte(`0`), "api")
	}
	waitHolding(t, clock)
	clock.Advance(100 * time.Millisecond)
	r.waitFor(t, "21 messages", func() bool { return len(r.msgs) == 21 })
	if r.writes != 2 {
		t.Fatalf("%d writes for 20 publications within the write delay, want 2", r.writes)
	}
}

func TestWriteDelayNeverHoldsBackAReplyOrAClose(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHub(t, hub.Config{WriteDelay: time.Hour, Clock: clock})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	clock.Advance(time.Millisecond)
	send(s, `{"id":1,"command":"subscribe","channel":"w"}`) // first write: at once
	r.waitFor(t, "subscribe reply", func() bool { return r.writes == 1 })
	// This publication waits out the hour behind the first write...
	_, _ = h.Publish(context.Background(), "w", []byte(`1`), "api")
	waitHolding(t, clock)
	// ...until a command's reply is queued behind it: both go out now, in
	// order.
	send(s, `{"id":2,"command":"ping"}`)
	r.waitFor(t, "publication and ping reply", func() bool { return len(r.msgs) == 3 })
	r.mu.Lock()
	first, second := r.msgs[1], r.msgs[2]
	r.mu.Unlock()
	if first["offset"] != 1.0 || second["id"] != 2.0 {
		t.Fatalf("order: %v then %v", first, second)
	}
	// A close does not wait either.
	_, _ = h.Publish(context.Background(), "w", []byte(`2`), "api")
	waitHolding(t, clock)
	s.Close(protocol.DisconnectShutdown)
	r.waitFor(t, "close", func() bool { return r.closed != nil })
}

func TestWriteDelayAppliesOnlyWhileTheNodeIsBusy(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	clock := clockwork.NewFakeClock()
	h := newHub(t, hub.Config{Metrics: m, WriteDelay: 20 * time.Millisecond, WriteDelayMinRate: 2000, Clock: clock})
	active := func() float64 { return metrics.Value(m.WriteDelayActive) }
	// tick lets the rate checks run once and waits until they have (their
	// tickers are back waiting, with the sweep and presence tickers).
	tick := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := clock.BlockUntilContext(ctx, 4); err != nil {
			t.Fatal(err)
		}
		clock.Advance(100 * time.Millisecond)
		if err := clock.BlockUntilContext(ctx, 4); err != nil {
			t.Fatal(err)
		}
	}
	var rs []*recorder
	for range 40 {
		r := newRecorder()
		send(h.NewSession(r, hub.SessionInfo{}), `{"id":1,"command":"subscribe","channel":"busy"}`)
		rs = append(rs, r)
	}
	for _, r := range rs {
		r.waitFor(t, "subscribe reply", func() bool { return r.writes == 1 })
	}
	tick() // 40 messages in 100 ms: 400/s
	if active() != 0 {
		t.Fatal("write delay on while the node is quiet")
	}
	// 400 messages in the next 100 ms: 4,000/s, each written before the
	// next is published (published back to back, a loaded machine's
	// writers could find two at once, which is the sign of falling behind).
	for i := range 10 {
		_, _ = h.Publish(context.Background(), "busy", []byte(`0`), "api")
		for _, r := range rs {
			r.waitFor(t, "a publication", func() bool { return len(r.msgs) == i+2 })
		}
	}
	tick()
	if active() != 0 {
		t.Fatal("write delay on while the writers keep up")
	}
	// The same rate, but every write takes 50 ms: the writers cannot keep
	// up, and the delay goes on.
	gate := make(chan struct{})
	for _, r := range rs {
		r.mu.Lock()
		r.block = gate
		r.mu.Unlock()
	}
	for range 10 {
		_, _ = h.Publish(context.Background(), "busy", []byte(`0`), "api")
	}
	clock.Advance(50 * time.Millisecond)
	close(gate)
	for _, r := range rs {
		r.waitFor(t, "20 publications", func() bool { return len(r.msgs) == 21 })
	}
	tick()
	waitMetric(t, "write delay on at 4,000 late messages/s", active, 1)
	tick() // nothing sent
	waitMetric(t, "write delay off after the publications stopped", active, 0)
}

// TestWriteDelayNeverOverflowsTheQueue: a writer waiting out write_delay
// writes as soon as its queue is half full, so the delay alone never makes
// a client that reads look like a slow consumer.
func TestWriteDelayNeverOverflowsTheQueue(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHub(t, hub.Config{WriteDelay: time.Hour, QueueMaxMessages: 10, Clock: clock})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	clock.Advance(time.Millisecond)
	send(s, `{"id":1,"command":"subscribe","channel":"q"}`)
	r.waitFor(t, "subscribe reply", func() bool { return r.writes == 1 })
	for i := range 50 {
		_, _ = h.Publish(context.Background(), "q", []byte(`0`), "api")
		if (i+1)%5 == 0 { // half the queue: the writer stops waiting
			r.waitFor(t, fmt.Sprintf("a half-full queue written after %d", i+1), func() bool { return len(r.msgs) >= i+2 || r.closed != nil })
		}
	}
	r.waitFor(t, "all 50 publications", func() bool { return len(r.msgs) == 51 || r.closed != nil })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed != nil {
		t.Fatalf("closed with %v after %d messages", *r.closed, len(r.msgs)-1)
	}
}

// TestIdempotencyWindow: a key is remembered for the hub's window, or for
// its namespace's when it sets one, and only on its channel.
func TestIdempotencyWindow(t *testing.T) {
	clock := clockwork.NewFakeClock()
	rules, err := auth.NewRules(auth.Namespace{HistorySize: 10},
		[]auth.Namespace{{Name: "short", Subscribe: auth.SubscribeAnyone, IdempotencyWindow: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	h := hub.New(hub.Config{Metrics: metrics.New(prometheus.NewRegistry()), Rules: rules, IdempotencyWindow: time.Minute},
		memory.New(memory.Options{Now: clock.Now}), memory.NewPresence())
	ctx := context.Background()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(ctx)
	pub := func(channel, key string) hub.Published {
		t.Helper()
		r, err := h.PublishOnce(ctx, channel, []byte(`1`), "api", key)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first, short := pub("c", "k"), pub("short:c", "k")
	clock.Advance(30 * time.Second)
	tests := []struct {
		name, channel, key string
		want               hub.Published
	}{
		{"within the hub's window", "c", "k", hub.Published{Position: first.Position, Duplicate: true}},
		{"past the namespace's window", "short:c", "k", hub.Published{Position: broker.Position{Offset: 2, Epoch: short.Epoch}}},
		{"another channel", "d", "k", hub.Published{Position: broker.Position{Offset: 1}}},
		{"no key", "c", "", hub.Published{Position: broker.Position{Offset: 2, Epoch: first.Epoch}}},
	}
	for _, tc := range tests {
		got := pub(tc.channel, tc.key)
		if tc.want.Epoch == "" {
			tc.want.Epoch = got.Epoch // a new channel's
		}
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if _, err := h.PublishOnce(ctx, "c", []byte(`1`), "api", "bad\x01key"); err == nil {
		t.Error("an invalid key was taken")
	}
}
