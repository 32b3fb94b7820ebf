package hub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// gate holds calls until it is opened: a broker or presence call that
// takes as long as a test needs. It honours the call's context.
type gate struct {
	mu      sync.Mutex
	armed   bool
	deaf    bool          // ignore the call's context
	entered chan struct{} // receives once per call held
	open    chan struct{}
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}, 16), open: make(chan struct{})}
}

func (g *gate) arm() {
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
}

// hold blocks the caller while the gate is armed and not open.
func (g *gate) hold(ctx context.Context) error {
	g.mu.Lock()
	armed, deaf := g.armed, g.deaf
	g.mu.Unlock()
	if !armed {
		return nil
	}
	g.entered <- struct{}{}
	if deaf {
		<-g.open
		return nil
	}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was never called", what)
	}
}

// gatedBroker is the memory broker with History and Publish held by gates.
type gatedBroker struct {
	broker.Broker
	history, publish *gate
}

// History reads, then holds the answer: what is published meanwhile comes
// after the position it returns.
func (b *gatedBroker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryResult, error) {
	r, err := b.Broker.History(ctx, channel, q)
	if err := b.history.hold(ctx); err != nil {
		return broker.HistoryResult{}, err
	}
	return r, err
}

func (b *gatedBroker) Publish(ctx context.Context, channel string, data []byte, o broker.PublishOptions) (broker.Position, error) {
	if err := b.publish.hold(ctx); err != nil {
		return broker.Position{}, err
	}
	return b.Broker.Publish(ctx, channel, data, o)
}

// gatedPresence is the memory presence store with AddPresence held by a
// gate.
type gatedPresence struct {
	broker.PresenceStore
	add   *gate
	added chan struct{} // receives after each AddPresence the gate held
}

func (p *gatedPresence) AddPresence(ctx context.Context, channel string, info broker.ClientInfo, ttl time.Duration) error {
	p.add.mu.Lock()
	armed := p.add.armed
	p.add.mu.Unlock()
	if err := p.add.hold(ctx); err != nil {
		return err
	}
	err := p.PresenceStore.AddPresence(ctx, channel, info, ttl)
	if armed {
		p.added <- struct{}{}
	}
	return err
}

type gatedHub struct {
	*hub.Hub
	b *gatedBroker
	p *gatedPresence
	m *metrics.Metrics
}

func newGatedHub(t *testing.T, cfg hub.Config) gatedHub {
	t.Helper()
	g := gatedHub{
		b: &gatedBroker{Broker: memory.New(memory.Options{}), history: newGate(), publish: newGate()},
		p: &gatedPresence{PresenceStore: memory.NewPresence(), add: newGate(), added: make(chan struct{}, 16)},
		m: metrics.New(prometheus.NewRegistry()),
	}
	cfg.Metrics = g.m
	cfg.ClientPublish = true
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 10
	}
	g.Hub = hub.New(cfg, g.b, g.p)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(g.b.history.open)
		close(g.b.publish.open)
		close(g.p.add.open)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return g
}

// waitGone waits until the hub has no more than n sessions left.
func waitGone(t *testing.T, h *hub.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Info().Connections > n {
		if time.Now().After(deadline) {
			t.Fatal("the session never ended")
		}
		time.Sleep(time.Millisecond)
	}
}

// A session that closes while its subscribe reads history must not end up
// in presence: nothing would ever remove it.
func TestNoGhostPresenceWhenTheSessionClosesDuringSubscribe(t *testing.T) {
	h := newGatedHub(t, hub.Config{Presence: true, JoinLeave: true})
	watcher := newRecorder()
	w := h.NewSession(watcher, hub.SessionInfo{})
	send(w, `{"id":1,"command":"subscribe","channel":"room"}`)
	watcher.waitFor(t, "watcher subscribed", func() bool { return len(watcher.msgs) == 2 }) // reply, own join

	h.b.history.arm()
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{User: "ghost"})
	done := make(chan struct{})
	go func() {
		send(s, `{"id":1,"command":"subscribe","channel":"room"}`)
		close(done)
	}()
	h.b.history.wait(t, "History")
	s.PeerGone() // the client leaves while its subscribe reads history
	select {
	case <-done: // closing the connection ended the read
	case <-time.After(10 * time.Second):
		t.Fatal("the subscribe's history read outlived its connection")
	}
	waitGone(t, h.Hub, 1)

	list, err := h.Presence(context.Background(), "room")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Client == s.ID() {
			t.Fatalf("closed session %s is still in presence: %v", s.ID(), list)
		}
	}
	// The watcher saw neither a join nor a leave of the ghost: one more
	// subscribe reply is all that may come after its own.
	send(w, `{"id":2,"command":"presence_stats","channel":"room"}`)
	watcher.waitFor(t, "stats reply", func() bool { return len(watcher.msgs) == 3 })
	if _, ok := watcher.msgs[2]["result"]; !ok {
		t.Fatalf("watcher got %v, want only the stats reply", watcher.msgs[2:])
	}
}

// The same race, when the history read ignores cancellation and completes
// after the session is gone.
func TestNoGhostPresenceWhenHistoryCompletesAfterClose(t *testing.T) {
	h := newGatedHub(t, hub.Config{Presence: true})
	h.b.history.deaf = true
	h.b.history.arm()
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	done := make(chan struct{})
	go func() {
		_, _ = s.Subscribe(context.Background(), "room", nil, nil)
		close(done)
	}()
	h.b.history.wait(t, "History")
	s.PeerGone()
	waitGone(t, h.Hub, 0)
	h.b.history.open <- struct{}{} // the read completes after the session is gone
	<-done
	if st, _ := h.PresenceStats(context.Background(), "room"); st.Clients != 0 {
		t.Fatalf("presence after close: %+v", st)
	}
}

// A presence refresh that read the subscription before an unsubscribe must
// not add the entry back after it.
func TestPresenceRefreshCannotUndoALeave(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newGatedHub(t, hub.Config{Presence: true, PresenceTTL: 30 * time.Second, Clock: clock})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"subscribe","channel":"room"}`)
	r.waitFor(t, "subscribed", func() bool { return len(r.msgs) == 1 })
	if st, _ := h.PresenceStats(context.Background(), "room"); st.Clients != 1 {
		t.Fatalf("presence after subscribe: %+v", st)
	}

	h.p.add.arm()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The loops waiting: sweep, presence, busy.
	if err := clock.BlockUntilContext(ctx, 3); err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Second) // a third of the TTL: a refresh round
	h.p.add.wait(t, "the refresh's AddPresence")
	send(s, `{"id":2,"command":"unsubscribe","channel":"room"}`)
	r.waitFor(t, "unsubscribed", func() bool { return len(r.msgs) == 2 })
	h.p.add.open <- struct{}{} // let the refresh through; then the leave must follow
	<-h.p.added
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := h.PresenceStats(context.Background(), "room")
		if st.Clients == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refresh brought back a presence entry after the unsubscribe: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// A broker call that never returns holds one command only until the
// command's timeout, and a client's close cancels it at once.
func TestCommandsEndWithTheirTimeoutOrTheConnection(t *testing.T) {
	h := newGatedHub(t, hub.Config{CommandTimeout: 50 * time.Millisecond})
	h.b.publish.arm()
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"publish","channel":"x","data":1}`) // returns after the timeout
	r.waitFor(t, "error reply", func() bool { return len(r.msgs) == 1 })
	if e, ok := r.msgs[0]["error"].(map[string]any); !ok || e["code"] != 503.0 {
		t.Fatalf("reply %v, want error 503", r.msgs[0])
	}

	h2 := newGatedHub(t, hub.Config{CommandTimeout: time.Hour})
	h2.b.publish.arm()
	s2 := h2.NewSession(newRecorder(), hub.SessionInfo{})
	done := make(chan struct{})
	go func() {
		send(s2, `{"id":1,"command":"publish","channel":"x","data":1}`)
		close(done)
	}()
	h2.b.publish.wait(t, "Publish")
	s2.PeerGone()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the connection did not cancel its command")
	}
}

// Publications that arrive during a subscribe's history read are held up
// to the queue's bounds; past them the subscribe answers recovered:false
// from after what was dropped, and live delivery goes on from there.
func TestSubscribeBufferIsBounded(t *testing.T) {
	h := newGatedHub(t, hub.Config{QueueMaxMessages: 8, HistorySize: 100})
	ctx := context.Background()
	var epoch string
	for range 3 {
		pos, err := h.Publish(ctx, "feed", []byte(`1`), "api")
		if err != nil {
			t.Fatal(err)
		}
		epoch = pos.Epoch
	}
	h.b.history.arm()
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	go send(s, fmt.Sprintf(`{"id":1,"command":"subscribe","channel":"feed","since":{"offset":1,"epoch":%q}}`, epoch))
	h.b.history.wait(t, "History")
	var last uint64
	for range 20 { // more than the buffer holds
		pos, err := h.Publish(ctx, "feed", []byte(`2`), "api")
		if err != nil {
			t.Fatal(err)
		}
		last = pos.Offset
	}
	h.b.history.open <- struct{}{}
	r.waitFor(t, "reply", func() bool { return len(r.msgs) == 1 })
	res := r.msgs[0]["result"].(map[string]any)
	if res["recovered"] != false || res["offset"] != float64(last) {
		t.Fatalf("reply %v, want recovered:false at offset %d", r.msgs[0], last)
	}
	pos, _ := h.Publish(ctx, "feed", []byte(`3`), "api")
	r.waitFor(t, "next publication", func() bool { return len(r.msgs) == 2 })
	if r.msgs[1]["offset"] != float64(pos.Offset) {
		t.Fatalf("after the reply got %v, want offset %d", r.msgs[1], pos.Offset)
	}
	if n := metrics.Value(h.m.Dropped.WithLabelValues(string(metrics.DropPendingOverflow))); n < 12 {
		t.Fatalf("dropped{subscribe_buffer_full} = %v, want at least 12", n)
	}
}

// A subscribe reply goes out at once even while the writer waits out
// write_delay (the clock is fake and never moves here).
func TestSubscribeReplyIsNotHeldBackByWriteDelay(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newGatedHub(t, hub.Config{WriteDelay: time.Hour, Clock: clock})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	clock.Advance(time.Millisecond)
	send(s, `{"id":1,"command":"subscribe","channel":"a"}`)
	r.waitFor(t, "first reply", func() bool { return len(r.msgs) == 1 })
	clock.Advance(time.Millisecond)
	send(s, `{"id":2,"command":"ping"}`) // a second write soon after: a stream
	r.waitFor(t, "second reply", func() bool { return len(r.msgs) == 2 })
	if _, err := h.Publish(context.Background(), "a", []byte(`1`), "api"); err != nil {
		t.Fatal(err) // queued behind write_delay: the writer now waits an hour
	}
	send(s, `{"id":4,"command":"subscribe","channel":"b"}`)
	r.waitFor(t, "the subscribe reply", func() bool {
		for _, m := range r.msgs {
			if m["id"] == 4.0 {
				return true
			}
		}
		return false
	})
}

// A failed socket write counts its messages as dropped, not sent.
func TestFailedWritesAreNotCountedAsSent(t *testing.T) {
	h := newGatedHub(t, hub.Config{})
	s := h.NewSession(failingTransport{}, hub.SessionInfo{})
	send(s, `{"id":1,"command":"ping"}`)
	waitGone(t, h.Hub, 0)
	if n := metrics.Value(h.m.MessagesSent); n != 0 {
		t.Fatalf("messages_sent_total = %v after a failed write", n)
	}
	if n := metrics.Value(h.m.Dropped.WithLabelValues(string(metrics.DropWriteFailed))); n != 1 {
		t.Fatalf("dropped{write_failed} = %v, want 1", n)
	}
}

type failingTransport struct{}

func (failingTransport) Name() string                      { return "failing" }
func (failingTransport) WriteMessages([]hub.Message) error { return errors.New("broken pipe") }
func (failingTransport) Close(protocol.Disconnect) error   { return nil }
