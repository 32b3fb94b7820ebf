package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/brokertest"
	"github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// waitFor bounds every wait on something asynchronous.
const waitFor = 15 * time.Second

// newBroker connects a broker to the Redis at url and closes it when the
// test ends.
func newBroker(tb testing.TB, url string, opts redis.Options) *redis.Broker {
	tb.Helper()
	opts.URL = url
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	b, err := redis.New(ctx, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// delivery is one publication as the handler saw it.
type delivery struct {
	pub   broker.Publication
	epoch string
}

// recorder is a broker.Handler that records deliveries per channel.
type recorder struct {
	mu     sync.Mutex
	pubs   map[string][]delivery
	events map[string][]string
}

func newRecorder() *recorder {
	return &recorder{pubs: map[string][]delivery{}, events: map[string][]string{}}
}

func (r *recorder) HandlePublication(channel string, pub broker.Publication, epoch string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs[channel] = append(r.pubs[channel], delivery{pub, epoch})
}

func (r *recorder) HandleEvent(channel string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[channel] = append(r.events[channel], string(data))
}

func (r *recorder) get(channel string) []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.pubs[channel]...)
}

// wait polls until the channel has at least n deliveries.
func (r *recorder) wait(t *testing.T, channel string, n int) []delivery {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		got := r.get(channel)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			var offs []string
			for _, d := range got {
				offs = append(offs, fmt.Sprintf("%s/%d", d.epoch, d.pub.Offset))
			}
			t.Fatalf("channel %s: %d deliveries (%s), want %d", channel, len(got), strings.Join(offs, " "), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testWriter sends log lines to the test's log until the test ends.
type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// testLogger returns a logger writing to t's log.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, nil))
}

// startNode returns a started broker with a recorder. Its log goes to
// the test's.
func startNode(t *testing.T, url string, opts redis.Options) (*redis.Broker, *recorder) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	b := newBroker(t, url, opts)
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.Start(ctx, rec); err != nil {
		t.Fatal(err)
	}
	return b, rec
}

// checkDense fails unless ds are offsets first, first+1, ... in one epoch.
func checkDense(t *testing.T, ds []delivery, first uint64, epoch string) {
	t.Helper()
	for i, d := range ds {
		if d.pub.Offset != first+uint64(i) || d.epoch != epoch {
			t.Fatalf("delivery %d: offset %d epoch %s, want offset %d epoch %s", i, d.pub.Offset, d.epoch, first+uint64(i), epoch)
		}
	}
}

// publish publishes n publications, retrying those that fail with
// ErrUnavailable, as the connections a Redis restart left dead are
// replaced.
func publish(t *testing.T, b broker.Broker, channel string, n int, opts broker.PublishOptions) broker.Position {
	t.Helper()
	var pos broker.Position
	deadline := time.Now().Add(waitFor)
	for i := 0; i < n; i++ {
		var err error
		pos, err = b.Publish(context.Background(), channel, []byte(fmt.Sprintf(`{"n":%d}`, i)), opts)
		if errors.Is(err, broker.ErrUnavailable) && time.Now().Before(deadline) {
			i--
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return pos
}

func offsets(pubs []broker.Publication) string {
	var s []string
	for _, p := range pubs {
		s = append(s, fmt.Sprint(p.Offset))
	}
	return strings.Join(s, " ")
}

func TestConformance(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	brokertest.Run(t, func(t *testing.T) broker.Broker { return newBroker(t, r.URL(), redis.Options{}) })
}

func TestPresenceConformance(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	brokertest.RunPresence(t, func(t *testing.T) broker.PresenceStore { return newBroker(t, r.URL(), redis.Options{}) })
}

// TestRestartWithDataKept: a Redis that comes back with its data keeps the
// channel's epoch and history, offsets continue, and a subscribed node gets
// what was published while it reconnected, in order and once.
func TestRestartWithDataKept(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	ctx := context.Background()
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: time.Hour}
	sub, rec := startNode(t, r.URL(), redis.Options{})
	pubNode := newBroker(t, r.URL(), redis.Options{})
	const ch = "kept"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	before := publish(t, pubNode, ch, 5, opts)
	rec.wait(t, ch, 5)

	r.Kill()
	r.Restart(t)
	// Publish at once: the subscriber is likely still reconnecting, so
	// these come to it from history.
	var pos broker.Position
	deadline := time.Now().Add(waitFor)
	for {
		var err error
		pos, err = pubNode.Publish(ctx, ch, []byte(`"after"`), opts)
		if err == nil {
			break
		}
		if !errors.Is(err, broker.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("publish after restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pos.Epoch != before.Epoch || pos.Offset != before.Offset+1 {
		t.Fatalf("after restart: %+v, before: %+v", pos, before)
	}
	publish(t, pubNode, ch, 4, opts)
	got := rec.wait(t, ch, 10)
	checkDense(t, got, 1, before.Epoch)

	h, err := pubNode.History(ctx, ch, broker.HistoryQuery{Limit: -1, Since: &broker.Position{Offset: 3, Epoch: before.Epoch}})
	if err != nil {
		t.Fatal(err)
	}
	if got := offsets(h.Publications); got != "4 5 6 7 8 9 10" || h.Position.Offset != 10 {
		t.Fatalf("history after restart: %s, position %+v", got, h.Position)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rec.get(ch)); n != 10 {
		t.Fatalf("%d deliveries, want 10 (a publication delivered twice)", n)
	}
}

// TestRestartWithDataLost: a Redis that comes back empty starts every
// channel in a new epoch; a position of the old one cannot be recovered,
// and a subscribed node sees the new epoch.
func TestRestartWithDataLost(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	opts := broker.PublishOptions{HistorySize: 10}
	sub, rec := startNode(t, r.URL(), redis.Options{})
	pubNode := newBroker(t, r.URL(), redis.Options{})
	const ch = "lost"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	old := publish(t, pubNode, ch, 3, opts)
	rec.wait(t, ch, 3)

	r.Kill()
	r.Restart(t)
	var res broker.HistoryResult
	var err error
	deadline := time.Now().Add(waitFor)
	for {
		res, err = pubNode.History(ctx, ch, broker.HistoryQuery{Limit: -1, Since: &old})
		if !errors.Is(err, broker.ErrUnavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, broker.ErrEpochMismatch) {
		t.Fatalf("since the old epoch: err %v, want ErrEpochMismatch", err)
	}
	if res.Position.Epoch == "" || res.Position.Epoch == old.Epoch || res.Position.Offset != 0 {
		t.Fatalf("position after data loss: %+v (old %+v)", res.Position, old)
	}
	pos := publish(t, pubNode, ch, 2, opts)
	if pos.Epoch != res.Position.Epoch || pos.Offset != 2 {
		t.Fatalf("publish after data loss: %+v, want offset 2 in epoch %s", pos, res.Position.Epoch)
	}
	got := rec.wait(t, ch, 5)
	checkDense(t, got[:3], 1, old.Epoch)
	checkDense(t, got[3:], 1, pos.Epoch)
}

func TestHistorySize(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	b := newBroker(t, r.URL(), redis.Options{})
	ctx := context.Background()
	tests := []struct {
		name  string
		sizes []int // history size of each publication
		want  string
	}{
		{"trimmed to size", []int{3, 3, 3, 3, 3, 3}, "4 5 6"},
		{"shrink keeps newest", []int{5, 5, 5, 5, 5, 2}, "5 6"},
		{"grow keeps old", []int{2, 2, 2, 4, 4}, "2 3 4 5"},
		{"size 0 keeps none", []int{3, 3, 0}, ""},
		{"size 0 then some", []int{0, 0, 2}, "3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := "size-" + tc.name
			for _, size := range tc.sizes {
				if _, err := b.Publish(ctx, ch, []byte(`1`), broker.PublishOptions{HistorySize: size}); err != nil {
					t.Fatal(err)
				}
			}
			h, err := b.History(ctx, ch, broker.HistoryQuery{Limit: -1})
			if err != nil {
				t.Fatal(err)
			}
			if got := offsets(h.Publications); got != tc.want || h.Position.Offset != uint64(len(tc.sizes)) {
				t.Fatalf("history %q position %d, want %q position %d", got, h.Position.Offset, tc.want, len(tc.sizes))
			}
		})
	}
}

// TestHistoryTTL uses real time with wide margins: what must have expired
// is read well after its TTL, what must not is read right away.
func TestHistoryTTL(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	b := newBroker(t, r.URL(), redis.Options{})
	ctx := context.Background()
	const ttl = 500 * time.Millisecond
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: ttl}

	first := publish(t, b, "ttl", 2, opts)
	time.Sleep(3 * ttl)
	// Read before any new publication: the expired entries are skipped.
	h, err := b.History(ctx, "ttl", broker.HistoryQuery{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Publications) != 0 || h.Position != first {
		t.Fatalf("after the TTL: %s, position %+v, want none at %+v", offsets(h.Publications), h.Position, first)
	}
	publish(t, b, "ttl", 1, broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Hour})
	h, err = b.History(ctx, "ttl", broker.HistoryQuery{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := offsets(h.Publications); got != "3" || h.Position.Offset != 3 || h.Position.Epoch != first.Epoch {
		t.Fatalf("history %q at %+v, want 3 in epoch %s", got, h.Position, first.Epoch)
	}
	if time.Since(h.Publications[0].Time).Abs() > time.Minute {
		t.Fatalf("publication time %v is not now", h.Publications[0].Time)
	}
}

// TestIdleChannelStartsNewEpoch: when a channel's state expires after
// IdleTTL, its next publication starts a new epoch.
func TestIdleChannelStartsNewEpoch(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	b := newBroker(t, r.URL(), redis.Options{IdleTTL: 200 * time.Millisecond})
	old := publish(t, b, "idle", 3, broker.PublishOptions{HistorySize: 10})
	time.Sleep(time.Second)
	pos := publish(t, b, "idle", 1, broker.PublishOptions{HistorySize: 10})
	if pos.Epoch == old.Epoch || pos.Offset != 1 {
		t.Fatalf("after idle expiry: %+v, old %+v", pos, old)
	}
}

func TestPresenceExpiry(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	p := newBroker(t, r.URL(), redis.Options{})
	ctx := context.Background()
	add := func(client, user string, ttl time.Duration) {
		t.Helper()
		if err := p.AddPresence(ctx, "pres", broker.ClientInfo{Client: client, User: user, Transport: "sse"}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	add("dead-node-client", "bob", 200*time.Millisecond)
	add("live", "alice", time.Hour)
	add("anon", "", time.Hour)
	deadline := time.Now().Add(waitFor)
	for {
		list, err := p.Presence(ctx, "pres")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 2 {
			if list[0].Client != "anon" || list[1] != (broker.ClientInfo{Client: "live", User: "alice", Transport: "sse"}) {
				t.Fatalf("presence %+v", list)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the expired client stays: %+v", list)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, err := p.PresenceStats(ctx, "pres")
	if err != nil || st != (broker.PresenceStats{Clients: 2, Users: 1}) {
		t.Fatalf("stats %+v %v", st, err)
	}
	// Refreshing an entry extends it.
	add("refreshed", "", 300*time.Millisecond)
	add("refreshed", "", time.Hour)
	time.Sleep(time.Second)
	if st, _ := p.PresenceStats(ctx, "pres"); st.Clients != 3 {
		t.Fatalf("refreshed entry expired: %+v", st)
	}
	// A channel whose entries all expire leaves no keys behind.
	add("short", "", 100*time.Millisecond)
	c := rawClient(t, r.URL())
	deadline = time.Now().Add(waitFor)
	for {
		n, err := c.Do(ctx, c.B().Exists().Key("switchboard:{pres2}:presence", "switchboard:{pres2}:presence-expiry").Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("presence keys of an empty channel do not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rawClient(t testing.TB, url string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestKeyLayout checks the documented key names, the prefix option and
// that history keys carry an expiry.
func TestKeyLayout(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	b := newBroker(t, r.URL(), redis.Options{Prefix: "app1"})
	ctx := context.Background()
	publish(t, b, "news", 1, broker.PublishOptions{HistorySize: 5, HistoryTTL: time.Minute})
	if err := b.AddPresence(ctx, "news", broker.ClientInfo{Client: "c"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	c := rawClient(t, r.URL())
	keys, err := c.Do(ctx, c.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"app1:{news}:meta": true, "app1:{news}:history": true,
		"app1:{news}:presence": true, "app1:{news}:presence-expiry": true,
	}
	if len(keys) != len(want) {
		t.Fatalf("keys %v", keys)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %s in %v", k, keys)
		}
		ttl, err := c.Do(ctx, c.B().Pttl().Key(k).Build()).AsInt64()
		if err != nil || ttl <= 0 {
			t.Fatalf("key %s has ttl %d (%v), want an expiry", k, ttl, err)
		}
	}
	if _, err := redis.New(ctx, redis.Options{URL: r.URL(), Prefix: "a{b}"}); err == nil {
		t.Fatal("a prefix with braces was accepted")
	}
}

// TestTwoNodes: a publication from one node reaches the other's handler,
// in order and once; a node without subscribers receives nothing.
func TestTwoNodes(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	a, recA := startNode(t, r.URL(), redis.Options{})
	b, recB := startNode(t, r.URL(), redis.Options{})
	if err := b.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	pos := publish(t, a, "room", 100, broker.PublishOptions{HistorySize: 10})
	if err := a.PublishEvent(ctx, "room", []byte(`{"join":"x"}`)); err != nil {
		t.Fatal(err)
	}
	got := recB.wait(t, "room", 100)
	checkDense(t, got, 1, pos.Epoch)
	for i, d := range got {
		if want := fmt.Sprintf(`{"n":%d}`, i); string(d.pub.Data) != want {
			t.Fatalf("delivery %d data %s, want %s", i, d.pub.Data, want)
		}
	}
	deadline := time.Now().Add(waitFor)
	for {
		recB.mu.Lock()
		ev := strings.Join(recB.events["room"], ",")
		recB.mu.Unlock()
		if ev == `{"join":"x"}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %q", ev)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(recB.get("room")); n != 100 {
		t.Fatalf("%d deliveries, want 100", n)
	}
	if n := len(recA.get("room")); n != 0 {
		t.Fatalf("the unsubscribed node got %d deliveries", n)
	}
	if err := b.Unsubscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	publish(t, a, "room", 1, broker.PublishOptions{})
	time.Sleep(100 * time.Millisecond)
	if n := len(recB.get("room")); n != 100 {
		t.Fatalf("%d deliveries after unsubscribe, want 100", n)
	}
}

// TestConcurrentPublishers: publishers on two nodes keep the offsets dense
// and every node receives them in order.
func TestConcurrentPublishers(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	nodes := make([]*redis.Broker, 2)
	recs := make([]*recorder, 2)
	for i := range nodes {
		nodes[i], recs[i] = startNode(t, r.URL(), redis.Options{})
		if err := nodes[i].Subscribe(ctx, "busy"); err != nil {
			t.Fatal(err)
		}
	}
	const perPublisher = 100
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for _, n := range nodes {
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perPublisher; i++ {
					pos, err := n.Publish(ctx, "busy", []byte(`0`), broker.PublishOptions{HistorySize: 1000})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					seen[pos.Offset] = true
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	const total = 6 * perPublisher
	for o := uint64(1); o <= total; o++ {
		if !seen[o] {
			t.Fatalf("offset %d not returned by any publish (%d returned)", o, len(seen))
		}
	}
	for _, rec := range recs {
		got := rec.wait(t, "busy", total)
		checkDense(t, got, 1, got[0].epoch)
	}
	h, err := nodes[0].History(ctx, "busy", broker.HistoryQuery{Limit: -1})
	if err != nil || len(h.Publications) != total || h.Publications[total-1].Offset != total {
		t.Fatalf("history: %d publications, %v", len(h.Publications), err)
	}
}

// TestUnavailable: with Redis down every call fails with ErrUnavailable;
// when it is back the node subscribes again.
func TestUnavailable(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	b, rec := startNode(t, r.URL(), redis.Options{})
	r.Kill()
	call := func(ctx context.Context) map[string]error {
		_, perr := b.Publish(ctx, "u", []byte(`1`), broker.PublishOptions{})
		_, herr := b.History(ctx, "u", broker.HistoryQuery{})
		_, prerr := b.Presence(ctx, "u")
		return map[string]error{
			"publish":      perr,
			"event":        b.PublishEvent(ctx, "u", []byte(`1`)),
			"history":      herr,
			"presence":     prerr,
			"add presence": b.AddPresence(ctx, "u", broker.ClientInfo{Client: "c"}, time.Minute),
		}
	}
	for op, err := range call(ctx) {
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", op, err)
		}
	}
	if err := b.Ping(ctx); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("ping with Redis down: %v, want ErrUnavailable", err)
	}
	// Subscribe fails once the node has noticed the lost connection.
	deadline := time.Now().Add(waitFor)
	for {
		err := b.Subscribe(ctx, "u")
		if errors.Is(err, broker.ErrUnavailable) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("subscribe with Redis down: %v", err)
		}
		_ = b.Unsubscribe(ctx, "u")
		time.Sleep(10 * time.Millisecond)
	}

	r.Restart(t)
	deadline = time.Now().Add(waitFor)
	for {
		err := b.Subscribe(ctx, "u")
		if err == nil {
			break
		}
		if !errors.Is(err, broker.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("subscribe after Redis returned: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pos := publish(t, b, "u", 1, broker.PublishOptions{})
	checkDense(t, rec.wait(t, "u", 1), 1, pos.Epoch)
	if err := b.Ping(ctx); err != nil {
		t.Fatalf("ping after Redis returned: %v", err)
	}
}

func TestNewUnreachable(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	url := r.URL()
	r.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := redis.New(ctx, redis.Options{URL: url})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("New with nothing listening: %v, want ErrUnavailable", err)
	}
	if _, err := redis.New(ctx, redis.Options{URL: "http://x"}); err == nil || errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("New with a bad URL: %v", err)
	}
}

func TestClosed(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	b, _ := startNode(t, r.URL(), redis.Options{})
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "c", []byte(`1`), broker.PublishOptions{}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if err := b.Subscribe(ctx, "c"); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
}

// TestPubSubConnectionKilled: when Redis drops the node's Pub/Sub
// connection (as on an output buffer overflow), the node reconnects and
// delivers what was published meanwhile, in order and once.
func TestPubSubConnectionKilled(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	sub, rec := startNode(t, r.URL(), redis.Options{})
	pubNode := newBroker(t, r.URL(), redis.Options{})
	opts := broker.PublishOptions{HistorySize: 1000}
	if err := sub.Subscribe(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, r.URL())
	total := 0
	for round := 0; round < 5; round++ {
		if err := raw.Do(ctx, raw.B().ClientKill().TypePubsub().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		publish(t, pubNode, "k", 20, opts)
		total += 20
		got := rec.wait(t, "k", total)
		checkDense(t, got, 1, got[0].epoch)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rec.get("k")); n != total {
		t.Fatalf("%d deliveries, want %d", n, total)
	}
}

// TestSentinel: with a master_set URL the broker finds the primary
// through a Sentinel.
func TestSentinel(t *testing.T) {
	primary := testenv.StartRedis(t, testenv.RedisOptions{})
	sentinel := testenv.StartRedisSentinel(t, primary, "sb")
	ctx := context.Background()
	a, _ := startNode(t, sentinel.URL(), redis.Options{})
	b, recB := startNode(t, sentinel.URL(), redis.Options{})
	if err := b.Subscribe(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	pos := publish(t, a, "s", 10, broker.PublishOptions{HistorySize: 10})
	checkDense(t, recB.wait(t, "s", 10), 1, pos.Epoch)
	raw := rawClient(t, primary.URL())
	if n, err := raw.Do(ctx, raw.B().Exists().Key("switchboard:{s}:meta").Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("the channel is not on the primary: %d %v", n, err)
	}
}

// TestSentinelFailover: when the primary dies and Sentinel promotes its
// replica, the nodes follow: publishing resumes in the same epoch and a
// subscribed node receives every publication once, in order.
func TestSentinelFailover(t *testing.T) {
	primary := testenv.StartRedis(t, testenv.RedisOptions{})
	replica := testenv.StartRedis(t, testenv.RedisOptions{ReplicaOf: primary.Addr()})
	sentinel := testenv.StartRedisSentinel(t, primary, "sb")
	ctx := context.Background()
	pubNode, _ := startNode(t, sentinel.URL(), redis.Options{})
	sub, rec := startNode(t, sentinel.URL(), redis.Options{})
	if err := sub.Subscribe(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 100}
	before := publish(t, pubNode, "f", 5, opts)
	// Wait until the replica has everything, so the failover loses nothing.
	raw := rawClient(t, primary.URL())
	if n, err := raw.Do(ctx, raw.B().Wait().Numreplicas(1).Timeout(int64(waitFor/time.Millisecond)).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d %v", n, err)
	}
	primary.Kill()

	deadline := time.Now().Add(3 * waitFor)
	var pos broker.Position
	for {
		var err error
		pos, err = pubNode.Publish(ctx, "f", []byte(`"after"`), opts)
		if err == nil {
			break
		}
		if !errors.Is(err, broker.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("publish during failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pos.Epoch != before.Epoch || pos.Offset != 6 {
		t.Fatalf("after failover %+v, before %+v", pos, before)
	}
	rawReplica := rawClient(t, replica.URL())
	if role, err := rawReplica.Do(ctx, rawReplica.B().Role().Build()).ToArray(); err != nil || len(role) == 0 {
		t.Fatalf("ROLE: %v", err)
	} else if s, _ := role[0].ToString(); s != "master" {
		t.Fatalf("the replica is %s after failover", s)
	}
	publish(t, pubNode, "f", 4, opts)
	checkDense(t, rec.wait(t, "f", 10), 1, before.Epoch)
}

// controlRecorder also takes control messages.
type controlRecorder struct {
	*recorder
	mu   sync.Mutex
	ctrl []string
}

func (c *controlRecorder) HandleControl(data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctrl = append(c.ctrl, string(data))
}

func (c *controlRecorder) got() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.ctrl, ",")
}

// TestControl: a control message reaches every node, the sender included,
// also after the Pub/Sub connection was replaced, and only nodes of the
// same prefix.
func TestControl(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	var nodes []*redis.Broker
	var recs []*controlRecorder
	for _, prefix := range []string{"", "", "other"} {
		b := newBroker(t, r.URL(), redis.Options{Prefix: prefix, Logger: testLogger(t)})
		rec := &controlRecorder{recorder: newRecorder()}
		if err := b.Start(ctx, rec); err != nil {
			t.Fatal(err)
		}
		nodes, recs = append(nodes, b), append(recs, rec)
	}
	waitControl := func(rec *controlRecorder, want string) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for rec.got() != want {
			if time.Now().After(deadline) {
				t.Fatalf("control messages %q, want %q", rec.got(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := nodes[0].PublishControl(ctx, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	waitControl(recs[0], `{"a":1}`)
	waitControl(recs[1], `{"a":1}`)

	raw := rawClient(t, r.URL())
	if err := raw.Do(ctx, raw.B().ClientKill().TypePubsub().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for !strings.HasPrefix(recs[0].got(), `{"a":1},{"b":2}`) {
		// Control messages are not kept: until node 0 has resubscribed,
		// they pass it by, so send until one arrives.
		if time.Now().After(deadline) {
			t.Fatalf("control after reconnecting: %q", recs[0].got())
		}
		if err := nodes[1].PublishControl(ctx, []byte(`{"b":2}`)); err != nil && !errors.Is(err, broker.ErrUnavailable) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := recs[2].got(); got != "" {
		t.Fatalf("a node of another prefix got %q", got)
	}
}

// TestResubscribeManyChannels: after a lost Pub/Sub connection the node
// subscribes again to every channel, several batches of them.
func TestResubscribeManyChannels(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	sub, rec := startNode(t, r.URL(), redis.Options{})
	pubNode := newBroker(t, r.URL(), redis.Options{})
	const n = 600
	for i := 0; i < n; i++ {
		if err := sub.Subscribe(ctx, fmt.Sprint("many-", i)); err != nil {
			t.Fatal(err)
		}
	}
	raw := rawClient(t, r.URL())
	if err := raw.Do(ctx, raw.B().ClientKill().TypePubsub().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		publish(t, pubNode, fmt.Sprint("many-", i), 1, broker.PublishOptions{HistorySize: 1})
	}
	for i := 0; i < n; i++ {
		checkDense(t, rec.wait(t, fmt.Sprint("many-", i), 1), 1, rec.get(fmt.Sprint("many-", i))[0].epoch)
	}
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < n; i++ {
		if got := len(rec.get(fmt.Sprint("many-", i))); got != 1 {
			t.Fatalf("channel many-%d: %d deliveries", i, got)
		}
	}
}

// TestIdempotentPublishTwoNodes: two nodes repeating the same keys at once
// store each key's publication once; every repeat answers its position,
// and the key lives next to the channel's keys with the window as expiry.
func TestIdempotentPublishTwoNodes(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx := context.Background()
	a, recA := startNode(t, r.URL(), redis.Options{})
	b, _ := startNode(t, r.URL(), redis.Options{})
	const ch, keys, repeats = "idem", 20, 4
	if err := a.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	opts := broker.PublishOptions{HistorySize: 10, IdempotencyWindow: time.Minute}
	epoch := brokertest.PublishOnceRacing(t, ctx, ch, []broker.Broker{a, b}, keys, repeats, opts)
	checkDense(t, recA.wait(t, ch, keys), 1, epoch)
	c := rawClient(t, r.URL())
	ttl, err := c.Do(ctx, c.B().Pttl().Key("switchboard:{idem}:idem:key-0").Build()).AsInt64()
	if err != nil || ttl <= 0 || ttl > time.Minute.Milliseconds() {
		t.Fatalf("idempotency key's expiry %d ms (%v), want within the window", ttl, err)
	}
}
