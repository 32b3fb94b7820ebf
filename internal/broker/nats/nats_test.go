package nats_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/brokertest"
	"github.com/switchboardhq/switchboard/internal/broker/nats"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// waitFor bounds every wait in these tests; the machines are shared, so it
// is generous and never a timing assertion.
const waitFor = 30 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// newBroker connects a broker to the server at url; it is closed when the
// test ends.
func newBroker(t testing.TB, url string, mod func(*nats.Options)) *nats.Broker {
	t.Helper()
	opts := nats.Options{URL: url, ReconnectWait: 50 * time.Millisecond, GapTimeout: 100 * time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	b, err := nats.New(ctxT(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// recorder is a broker.Handler that keeps every delivery.
type recorder struct {
	mu     sync.Mutex
	pubs   map[string][]delivery
	events map[string][]string
}

type delivery struct {
	pub   broker.Publication
	epoch string
}

func newRecorder() *recorder {
	return &recorder{pubs: map[string][]delivery{}, events: map[string][]string{}}
}

func (r *recorder) HandlePublication(channel string, pub broker.Publication, epoch string) {
	r.mu.Lock()
	r.pubs[channel] = append(r.pubs[channel], delivery{pub, epoch})
	r.mu.Unlock()
}

func (r *recorder) HandleEvent(channel string, data []byte) {
	r.mu.Lock()
	r.events[channel] = append(r.events[channel], string(data))
	r.mu.Unlock()
}

func (r *recorder) get(channel string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pubs[channel])
}

// waitOffset waits until channel's deliveries include offset off in epoch
// and returns them all.
func (r *recorder) waitOffset(t testing.TB, channel string, off uint64, epoch string) []delivery {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := r.get(channel)
		for _, d := range got {
			if d.pub.Offset == off && d.epoch == epoch {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: offset %d of epoch %s not delivered; got %v", channel, off, epoch, summary(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func summary(ds []delivery) string {
	s := ""
	for _, d := range ds {
		s += fmt.Sprintf("%d/%s ", d.pub.Offset, d.epoch)
	}
	return s
}

// checkDense fails unless ds are offsets 1..n of one epoch, in order, once.
func checkDense(t testing.TB, ds []delivery, n int, epoch string) {
	t.Helper()
	if len(ds) != n {
		t.Fatalf("%d deliveries, want %d: %s", len(ds), n, summary(ds))
	}
	for i, d := range ds {
		if d.pub.Offset != uint64(i+1) || d.epoch != epoch {
			t.Fatalf("delivery %d is %d/%s, want %d/%s: %s", i, d.pub.Offset, d.epoch, i+1, epoch, summary(ds))
		}
	}
}

func startedBroker(t testing.TB, url string, mod func(*nats.Options)) (*nats.Broker, *recorder) {
	t.Helper()
	b := newBroker(t, url, mod)
	rec := newRecorder()
	if err := b.Start(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	return b, rec
}

// eventually retries f until it succeeds, for a server coming back.
func eventually[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		v, err := f()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", waitFor, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var hist = broker.PublishOptions{HistorySize: 100, HistoryTTL: time.Hour}

func publish(t testing.TB, b *nats.Broker, channel string, n int, opts broker.PublishOptions) broker.Position {
	t.Helper()
	var pos broker.Position
	for i := 0; i < n; i++ {
		var err error
		if pos, err = b.Publish(ctxT(t), channel, []byte(fmt.Sprint(i)), opts); err != nil {
			t.Fatal(err)
		}
	}
	return pos
}

func offsets(pubs []broker.Publication) []uint64 {
	out := make([]uint64, len(pubs))
	for i, p := range pubs {
		out[i] = p.Offset
	}
	return out
}

func span(lo, hi uint64) []uint64 {
	var out []uint64
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

func TestConformance(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	brokertest.Run(t, func(t *testing.T) broker.Broker { return newBroker(t, srv.URL(), nil) })
}

func TestPresenceConformance(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	brokertest.RunPresence(t, func(t *testing.T) broker.PresenceStore { return newBroker(t, srv.URL(), nil) })
}

// TestRestart restarts the server under a subscribed, publishing node: with
// its data kept, offsets continue in the same epoch and history is intact;
// with its data lost, the channel starts over in a new epoch.
func TestRestart(t *testing.T) {
	for _, persist := range []bool{true, false} {
		t.Run(fmt.Sprintf("persist=%v", persist), func(t *testing.T) {
			srv := testenv.StartNATS(t, testenv.NATSOptions{Persist: persist})
			b, rec := startedBroker(t, srv.URL(), nil)
			ctx := ctxT(t)
			const ch = "room:restart"
			if err := b.Subscribe(ctx, ch); err != nil {
				t.Fatal(err)
			}
			before := publish(t, b, ch, 5, hist)
			rec.waitOffset(t, ch, 5, before.Epoch)
			if err := b.AddPresence(ctx, ch, broker.ClientInfo{Client: "c1"}, time.Minute); err != nil {
				t.Fatal(err)
			}

			srv.Kill()
			down, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := b.Publish(down, ch, []byte(`"down"`), hist); !errors.Is(err, broker.ErrUnavailable) {
				t.Fatalf("publish while down: %v, want ErrUnavailable", err)
			}
			srv.Restart(t)

			since := &broker.Position{Offset: 3, Epoch: before.Epoch}
			if persist {
				pos := eventually(t, func() (broker.Position, error) { return b.Publish(ctx, ch, []byte(`"after"`), hist) })
				if pos != (broker.Position{Offset: 6, Epoch: before.Epoch}) {
					t.Fatalf("after restart: %+v, want offset 6 in epoch %s", pos, before.Epoch)
				}
				for _, reader := range []*nats.Broker{b, newBroker(t, srv.URL(), nil)} {
					r, err := reader.History(ctx, ch, broker.HistoryQuery{Since: since, Limit: -1})
					if err != nil {
						t.Fatal(err)
					}
					if got := offsets(r.Publications); !slices.Equal(got, []uint64{4, 5, 6}) || r.Position != pos {
						t.Fatalf("history since 3: %v at %+v", got, r.Position)
					}
				}
				checkDense(t, rec.waitOffset(t, ch, 6, before.Epoch), 6, before.Epoch)
				list, err := b.Presence(ctx, ch)
				if err != nil || len(list) != 1 {
					t.Fatalf("presence after restart: %+v %v", list, err)
				}
				return
			}
			r := eventually(t, func() (broker.HistoryResult, error) {
				r, err := b.History(ctx, ch, broker.HistoryQuery{Since: since, Limit: -1})
				if errors.Is(err, broker.ErrEpochMismatch) {
					return r, nil
				}
				return r, fmt.Errorf("history since the old epoch: %w", err)
			})
			if r.Position.Offset != 0 || r.Position.Epoch == "" || r.Position.Epoch == before.Epoch {
				t.Fatalf("position after data loss %+v (old epoch %s)", r.Position, before.Epoch)
			}
			pos, err := b.Publish(ctx, ch, []byte(`"after"`), hist)
			if err != nil || pos != (broker.Position{Offset: 1, Epoch: r.Position.Epoch}) {
				t.Fatalf("first publication after data loss: %+v %v, want offset 1 in %s", pos, err, r.Position.Epoch)
			}
			got := rec.waitOffset(t, ch, 1, pos.Epoch)
			if last := got[len(got)-1]; last.pub.Offset != 1 || last.epoch != pos.Epoch || len(got) != 6 {
				t.Fatalf("deliveries across the data loss: %s", summary(got))
			}
			eventually(t, func() (struct{}, error) { // the presence bucket came back empty
				list, err := b.Presence(ctx, ch)
				if err == nil && len(list) != 0 {
					err = fmt.Errorf("presence survived data loss: %+v", list)
				}
				return struct{}{}, err
			})
		})
	}
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestHistoryTrimming(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	clk := &clock{now: time.Now()}
	b := newBroker(t, srv.URL(), func(o *nats.Options) { o.Now = clk.Now; o.HistoryMaxSize = 150 })
	ctx := ctxT(t)
	all := broker.HistoryQuery{Limit: -1}
	tests := []struct {
		name    string
		publish func(ch string)
		q       broker.HistoryQuery
		want    []uint64
		top     uint64
	}{
		{"size", func(ch string) { publish(t, b, ch, 10, broker.PublishOptions{HistorySize: 3}) }, all, []uint64{8, 9, 10}, 10},
		{"size change keeps newest", func(ch string) {
			publish(t, b, ch, 6, broker.PublishOptions{HistorySize: 4})
			publish(t, b, ch, 1, broker.PublishOptions{HistorySize: 2})
		}, all, []uint64{6, 7}, 7},
		{"no history, offsets grow", func(ch string) { publish(t, b, ch, 3, broker.PublishOptions{}) }, all, nil, 3},
		{"capped by HistoryMaxSize", func(ch string) { publish(t, b, ch, 160, broker.PublishOptions{HistorySize: 1000}) }, all, span(11, 160), 160},
		{"ttl", func(ch string) {
			opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}
			publish(t, b, ch, 1, opts)
			clk.Add(45 * time.Second)
			publish(t, b, ch, 1, opts)
			clk.Add(30 * time.Second) // the first is now 75 s old
		}, all, []uint64{2}, 2},
		{"long range", func(ch string) { publish(t, b, ch, 50, hist) }, all, span(1, 50), 50},
		{"long range since", func(ch string) { publish(t, b, ch, 50, hist) }, broker.HistoryQuery{Limit: -1, Since: &broker.Position{Offset: 10}}, span(11, 50), 50},
		{"long range limit", func(ch string) { publish(t, b, ch, 50, hist) }, broker.HistoryQuery{Limit: 3}, []uint64{1, 2, 3}, 50},
		{"short range since", func(ch string) { publish(t, b, ch, 50, hist) }, broker.HistoryQuery{Limit: -1, Since: &broker.Position{Offset: 45}}, span(46, 50), 50},
		{"reverse", func(ch string) { publish(t, b, ch, 50, hist) }, broker.HistoryQuery{Limit: 3, Reverse: true}, []uint64{50, 49, 48}, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := "trim:" + tc.name
			tc.publish(ch)
			q := tc.q
			if q.Since != nil {
				r, err := b.History(ctx, ch, broker.HistoryQuery{})
				if err != nil {
					t.Fatal(err)
				}
				q.Since = &broker.Position{Offset: q.Since.Offset, Epoch: r.Position.Epoch}
			}
			r, err := b.History(ctx, ch, q)
			if err != nil {
				t.Fatal(err)
			}
			if got := offsets(r.Publications); !slices.Equal(got, tc.want) || r.Position.Offset != tc.top {
				t.Fatalf("offsets %v at %d, want %v at %d", got, r.Position.Offset, tc.want, tc.top)
			}
			for _, p := range r.Publications {
				if want := fmt.Sprint(int(p.Offset) - 1); tc.name == "long range" && string(p.Data) != want {
					t.Fatalf("offset %d holds %s, want %s", p.Offset, p.Data, want)
				}
			}
		})
	}

	t.Run("purge keeps the stream short", func(t *testing.T) {
		const ch = "trim:purge"
		publish(t, b, ch, 200, broker.PublishOptions{HistorySize: 3})
		js := rawJetStream(t, srv.URL())
		eventually(t, func() (struct{}, error) {
			n, err := storedCount(ctx, js, "switchboard.hist.trim_3Apurge")
			if err == nil && n > 3+8+64 {
				err = fmt.Errorf("%d messages stored", n)
			}
			return struct{}{}, err
		})
	})
}

func rawJetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := gonats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func storedCount(ctx context.Context, js jetstream.JetStream, subject string) (uint64, error) {
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return 0, err
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return info.State.Subjects[subject], nil
}

// TestIdleChannelNewEpoch: a channel whose messages all expired starts
// over in a new epoch, never reusing offsets in the old one.
func TestIdleChannelNewEpoch(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	b := newBroker(t, srv.URL(), func(o *nats.Options) { o.HistoryMaxAge = time.Second })
	ctx := ctxT(t)
	const ch = "idle"
	first := publish(t, b, ch, 3, hist)
	r := eventually(t, func() (broker.HistoryResult, error) {
		r, err := b.History(ctx, ch, broker.HistoryQuery{})
		if err == nil && r.Position.Epoch == first.Epoch {
			err = errors.New("not expired yet")
		}
		return r, err
	})
	if r.Position.Offset != 0 {
		t.Fatalf("expired channel at %+v", r.Position)
	}
	pos, err := b.Publish(ctx, ch, []byte(`1`), hist)
	if err != nil || pos != (broker.Position{Offset: 1, Epoch: r.Position.Epoch}) {
		t.Fatalf("publish after expiry: %+v %v, want offset 1 in %s", pos, err, r.Position.Epoch)
	}
}

func TestPresenceExpiry(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	clk := &clock{now: time.Now()}
	withClock := func(o *nats.Options) { o.Now = clk.Now }
	alive, dead := newBroker(t, srv.URL(), withClock), newBroker(t, srv.URL(), withClock)
	ctx := ctxT(t)
	const ch = "presence:expiry"
	add := func(b *nats.Broker, client string, ttl time.Duration) {
		t.Helper()
		if err := b.AddPresence(ctx, ch, broker.ClientInfo{Client: client, User: "u-" + client}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	clients := func() []string {
		t.Helper()
		list, err := alive.Presence(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range list {
			out = append(out, c.Client)
		}
		return out
	}
	add(alive, "a1", time.Minute)
	add(dead, "d1", time.Minute)
	add(dead, "d2", time.Minute)
	if got := clients(); !slices.Equal(got, []string{"a1", "d1", "d2"}) {
		t.Fatalf("presence %v", got)
	}
	_ = dead.Close(ctx) // a node dies without removing its clients
	for i := 0; i < 3; i++ {
		clk.Add(30 * time.Second)
		add(alive, "a1", time.Minute) // the living node refreshes
	}
	if got := clients(); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("presence after the dead node's ttl: %v", got)
	}
	stats, err := alive.PresenceStats(ctx, ch)
	if err != nil || stats != (broker.PresenceStats{Clients: 1, Users: 1}) {
		t.Fatalf("stats %+v %v", stats, err)
	}
}

// TestTwoNodes: a publication from one node reaches the other's handler,
// in order, exactly once, and events too.
func TestTwoNodes(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	a, _ := startedBroker(t, srv.URL(), nil)
	b, recB := startedBroker(t, srv.URL(), nil)
	ctx := ctxT(t)
	const ch = "news/two.nodes#1"
	if err := b.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	pos := publish(t, a, ch, 100, hist)
	checkDense(t, recB.waitOffset(t, ch, 100, pos.Epoch), 100, pos.Epoch)
	if err := a.PublishEvent(ctx, ch, []byte(`{"join":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() (struct{}, error) {
		recB.mu.Lock()
		defer recB.mu.Unlock()
		if len(recB.events[ch]) != 1 {
			return struct{}{}, fmt.Errorf("events %v", recB.events[ch])
		}
		return struct{}{}, nil
	})
	// a is not subscribed: it receives nothing, and b no duplicates.
	pos = publish(t, a, ch, 1, hist)
	checkDense(t, recB.waitOffset(t, ch, 101, pos.Epoch), 101, pos.Epoch)
}

// TestConcurrentPublishersTwoNodes: publishers on two nodes racing for one
// channel get distinct, dense offsets, delivered in order once to each.
func TestConcurrentPublishersTwoNodes(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	a, recA := startedBroker(t, srv.URL(), nil)
	b, recB := startedBroker(t, srv.URL(), nil)
	ctx := ctxT(t)
	const ch = "race"
	for _, n := range []*nats.Broker{a, b} {
		if err := n.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	const perPublisher, publishers = 40, 4
	var mu sync.Mutex
	var got []uint64
	epochs := map[string]bool{}
	var wg sync.WaitGroup
	for _, n := range []*nats.Broker{a, b} {
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perPublisher; i++ {
					pos, err := n.Publish(ctx, ch, []byte(`0`), hist)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got = append(got, pos.Offset)
					epochs[pos.Epoch] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	total := 2 * publishers * perPublisher
	slices.Sort(got)
	if !slices.Equal(got, span(1, uint64(total))) || len(epochs) != 1 {
		t.Fatalf("offsets handed out %v in epochs %v", got, epochs)
	}
	var epoch string
	for e := range epochs {
		epoch = e
	}
	checkDense(t, recA.waitOffset(t, ch, uint64(total), epoch), total, epoch)
	checkDense(t, recB.waitOffset(t, ch, uint64(total), epoch), total, epoch)
	r, err := a.History(ctx, ch, broker.HistoryQuery{Limit: -1})
	if err != nil || !slices.Equal(offsets(r.Publications), span(uint64(total)-99, uint64(total))) {
		t.Fatalf("history %v %v", offsets(r.Publications), err)
	}
}

// TestCatchUpAfterReconnect: a node that reconnects after a publication
// was announced without it reads that publication from history.
func TestCatchUpAfterReconnect(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{Persist: true})
	fast, _ := startedBroker(t, srv.URL(), nil)
	slow, rec := startedBroker(t, srv.URL(), func(o *nats.Options) { o.ReconnectWait = 2 * time.Second })
	ctx := ctxT(t)
	const ch = "catch-up"
	if err := slow.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	first := publish(t, fast, ch, 2, hist)
	rec.waitOffset(t, ch, 2, first.Epoch)
	srv.Kill()
	srv.Restart(t)
	// fast is back long before slow: slow misses these announcements.
	for i := 0; i < 3; i++ {
		eventually(t, func() (broker.Position, error) { return fast.Publish(ctx, ch, []byte(`1`), hist) })
	}
	checkDense(t, rec.waitOffset(t, ch, 5, first.Epoch), 5, first.Epoch)
}

func TestUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = nats.New(ctxT(t), nats.Options{URL: "nats://" + addr})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("New with no server: %v, want ErrUnavailable", err)
	}
}

func TestClosed(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	b, _ := startedBroker(t, srv.URL(), nil)
	ctx := ctxT(t)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "c", []byte(`1`), hist); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if _, err := b.History(ctx, "c", broker.HistoryQuery{}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("history after close: %v", err)
	}
	if err := b.Subscribe(ctx, "c"); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	if err := b.AddPresence(ctx, "c", broker.ClientInfo{Client: "x"}, time.Minute); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("add presence after close: %v", err)
	}
}

func TestOptions(t *testing.T) {
	tests := map[string]nats.Options{
		"no URL":          {},
		"wildcard prefix": {URL: "nats://127.0.0.1:1", Prefix: "sb.*"},
		"empty token":     {URL: "nats://127.0.0.1:1", Prefix: "sb..x"},
	}
	for name, opts := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := nats.New(ctxT(t), opts); err == nil || errors.Is(err, broker.ErrUnavailable) {
				t.Fatalf("New: %v, want a configuration error", err)
			}
		})
	}
}

// BenchmarkPublish measures stored and announced publications per second
// on one channel (each waits for the previous one's offset) and on a
// channel per goroutine.
func BenchmarkPublish(b *testing.B) {
	srv := testenv.StartNATS(b, testenv.NATSOptions{})
	br, _ := startedBroker(b, srv.URL(), nil)
	ctx := ctxT(b)
	data := []byte(`{"text":"hello, world","n":12345}`)
	b.Run("one-channel", func(b *testing.B) {
		for b.Loop() {
			if _, err := br.Publish(ctx, "bench", data, hist); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
	})
	// Idempotency keys: a new key each time (read, claim and settle in the
	// key bucket around the store), and the same key again (one read).
	keyed := hist
	keyed.IdempotencyWindow = time.Minute
	b.Run("one-channel-new-key", func(b *testing.B) {
		run, i := time.Now().UnixNano(), 0 // keys new to every run, -count included
		for b.Loop() {
			i++
			keyed.IdempotencyKey = fmt.Sprint(run, "-", i)
			if _, err := br.Publish(ctx, "bench-keyed", data, keyed); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
	})
	b.Run("one-channel-repeated-key", func(b *testing.B) {
		keyed.IdempotencyKey = "again"
		for b.Loop() {
			if _, err := br.Publish(ctx, "bench-keyed", data, keyed); err != nil && !errors.Is(err, broker.ErrDuplicate) {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
	})
	b.Run("channel-per-goroutine", func(b *testing.B) {
		var id sync.Mutex
		n := 0
		b.SetParallelism(8) // goroutines per CPU: each mostly waits for its acknowledgement
		b.RunParallel(func(pb *testing.PB) {
			id.Lock()
			n++
			ch := fmt.Sprint("bench-", n)
			id.Unlock()
			for pb.Next() {
				if _, err := br.Publish(ctx, ch, data, hist); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pubs/s")
	})
}

// TestStorageAndReplicas: the stream and the presence bucket are created
// with the configured storage, replicas and prefix, and a node configured
// otherwise than the existing stream still starts.
func TestStorageAndReplicas(t *testing.T) {
	for _, memory := range []bool{false, true} {
		t.Run(fmt.Sprintf("memory=%v", memory), func(t *testing.T) {
			srv := testenv.StartNATS(t, testenv.NATSOptions{})
			ctx := ctxT(t)
			newBroker(t, srv.URL(), func(o *nats.Options) {
				o.MemoryStorage, o.Prefix, o.HistoryMaxSize, o.HistoryMaxAge = memory, "t.one", 50, 2*time.Hour
			})
			want := jetstream.FileStorage
			if memory {
				want = jetstream.MemoryStorage
			}
			js := rawJetStream(t, srv.URL())
			histStream, err := js.StreamNameBySubject(ctx, "t.one.hist.>")
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{histStream, "KV_t_one_presence"} {
				s, err := js.Stream(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if cfg := s.CachedInfo().Config; cfg.Storage != want || cfg.Replicas != 1 {
					t.Errorf("stream %s: storage %v, %d replicas; want %v, 1", name, cfg.Storage, cfg.Replicas, want)
				}
				if cfg := s.CachedInfo().Config; name == histStream && (cfg.MaxAge != 2*time.Hour || cfg.MaxMsgsPerSubject != 50+8) {
					t.Errorf("history stream: max age %s, %d messages per channel; want 2h, 58", cfg.MaxAge, cfg.MaxMsgsPerSubject)
				}
			}
			// Replicas reach JetStream, which a single server refuses.
			_, err = nats.New(ctx, nats.Options{URL: srv.URL(), Prefix: "t.three", Replicas: 3, MemoryStorage: memory})
			if err == nil || errors.Is(err, broker.ErrUnavailable) || !strings.Contains(err.Error(), "replicas") {
				t.Errorf("3 replicas on one server: %v, want JetStream's refusal", err)
			}
			// A node configured with the other storage uses what exists.
			other := newBroker(t, srv.URL(), func(o *nats.Options) { o.MemoryStorage = !memory; o.Prefix = "t.one" })
			if _, err := other.Publish(ctx, "c", []byte(`1`), hist); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSubscribeWhileDown: while the server is gone, Subscribe fails at once
// with ErrUnavailable instead of waiting out the request timeout; once the
// server is back the same channel can be subscribed and receives
// publications, and a channel subscribed before the outage still does.
func TestSubscribeWhileDown(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{Persist: true})
	b, rec := startedBroker(t, srv.URL(), nil)
	ctx := ctxT(t)
	if err := b.Subscribe(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	eventually(t, func() (struct{}, error) { // the client has noticed
		if err := b.Ping(ctx); err == nil {
			return struct{}{}, errors.New("still connected")
		}
		return struct{}{}, nil
	})
	// No deadline on the context: only the broker's own fail-fast keeps
	// this from waiting the default 5 s request timeout.
	start := time.Now()
	err := b.Subscribe(context.Background(), "during")
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("subscribe while down: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("subscribe while down took %s", d)
	}
	srv.Restart(t)
	eventually(t, func() (struct{}, error) { return struct{}{}, b.Subscribe(ctx, "during") })
	for _, ch := range []string{"during", "before"} {
		pos := eventually(t, func() (broker.Position, error) { return b.Publish(ctx, ch, []byte(`1`), hist) })
		rec.waitOffset(t, ch, pos.Offset, pos.Epoch)
	}
}

// TestIdempotentPublishTwoNodes: publishers on two nodes repeating the
// same keys at once store each key's publication once, and every repeat
// answers its offset.
func TestIdempotentPublishTwoNodes(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	a, recA := startedBroker(t, srv.URL(), nil)
	b, _ := startedBroker(t, srv.URL(), nil)
	ctx := ctxT(t)
	const ch, keys, repeats = "idem", 20, 4
	if err := a.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	opts := hist
	opts.IdempotencyWindow = time.Minute
	epoch := brokertest.PublishOnceRacing(t, ctx, ch, []broker.Broker{a, b}, keys, repeats, opts)
	checkDense(t, recA.waitOffset(t, ch, keys, epoch), keys, epoch)
}

// TestDuplicateWindow: the history stream's duplicate window follows
// IdempotencyMaxWindow, on a new stream and on an existing one, within
// JetStream's default and HistoryMaxAge.
func TestDuplicateWindow(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	ctx := ctxT(t)
	js := rawJetStream(t, srv.URL())
	for _, tc := range []struct {
		window, maxAge, want time.Duration
	}{
		{0, 0, 2 * time.Minute},
		{10 * time.Minute, 0, 10 * time.Minute},
		{3 * time.Hour, time.Hour, time.Hour},
		{time.Second, 0, 2 * time.Minute},
	} {
		newBroker(t, srv.URL(), func(o *nats.Options) {
			o.Prefix, o.IdempotencyMaxWindow, o.HistoryMaxAge = "dup", tc.window, tc.maxAge
		})
		name, err := js.StreamNameBySubject(ctx, "dup.hist.>")
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Duplicates; got != tc.want {
			t.Errorf("window %s, max age %s: duplicate window %s, want %s", tc.window, tc.maxAge, got, tc.want)
		}
	}
}
