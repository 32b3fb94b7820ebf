package nats

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// kvKey is what the server accepts as a key-value key.
var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestToken(t *testing.T) {
	tests := map[string]string{
		"news":              "news",
		"chat:room.1":       "chat_3Aroom_2E1",
		"a_b":               "a_5Fb",
		"feed/user#42,7":    "feed_2Fuser_2342_2C7",
		"x*>y z":            "x_2A_3Ey_20z",
		"ns:@me=1+2!":       "ns_3A_40me_3D1_2B2_21",
		"Mixed-Case-09":     "Mixed-Case-09",
		"\xff\x00":          "_FF_00",
		"already_2E_escape": "already_5F2E_5Fescape",
	}
	seen := map[string]string{}
	for in, want := range tests {
		got := token(in)
		if got != want {
			t.Errorf("token(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(got, ".*> \t") || !kvKey.MatchString(got) {
			t.Errorf("token(%q) = %q is not a valid subject token and key", in, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("token(%q) = token(%q) = %q", in, other, got)
		}
		seen[got] = in
	}
	// Injective over every pair of bytes from the channel alphabet and more.
	all := map[string]string{}
	alphabet := "aZ09_-.:@/=,#+! *>"
	for _, x := range alphabet {
		for _, y := range alphabet {
			in := string(x) + string(y)
			if prev, dup := all[token(in)]; dup {
				t.Fatalf("token(%q) = token(%q)", in, prev)
			}
			all[token(in)] = in
		}
	}
}

type sink struct {
	mu   sync.Mutex
	pubs []broker.Publication
}

func (s *sink) HandlePublication(_ string, pub broker.Publication, _ string) {
	s.mu.Lock()
	s.pubs = append(s.pubs, pub)
	s.mu.Unlock()
}

func (s *sink) HandleEvent(string, []byte) {}

func (s *sink) offsets() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, p := range s.pubs {
		out = append(out, p.Offset)
	}
	return out
}

func (s *sink) waitFor(t *testing.T, want []uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(s.offsets(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v, want %v", s.offsets(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testBroker(t *testing.T, gap time.Duration) (*Broker, *sink) {
	t.Helper()
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	b, err := New(ctx, Options{URL: srv.URL(), GapTimeout: gap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	s := &sink{}
	if err := b.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	return b, s
}

// storeSilently stores the channel's next publication without announcing
// it, as a publisher that dies between the two steps does.
func storeSilently(t *testing.T, b *Broker, channel string) stored {
	t.Helper()
	ctx := context.Background()
	subject := b.histPrefix + token(channel)
	r, top, err := b.top(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.Publication{Offset: top.pub.Offset + 1, Data: []byte(fmt.Sprint(top.pub.Offset + 1)), Time: time.Now()}
	ack, err := b.store(ctx, r, subject, pub, tip{stream: r.name, seq: top.seq, offset: top.pub.Offset, epoch: top.epoch}, nextFloor(top.floor, pub.Offset, 10), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	b.dropTip(channel)
	return stored{seq: ack.Sequence, pub: pub, epoch: top.epoch}
}

// TestLostAnnouncement: a subscriber that sees a later publication reads
// the one whose announcement was lost from history, and delivers both in
// order.
func TestLostAnnouncement(t *testing.T) {
	b, s := testBroker(t, 50*time.Millisecond)
	ctx := context.Background()
	const ch = "lost"
	if err := b.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, ch, []byte(`1`), broker.PublishOptions{HistorySize: 10}); err != nil {
		t.Fatal(err)
	}
	storeSilently(t, b, ch)
	storeSilently(t, b, ch)
	if _, err := b.Publish(ctx, ch, []byte(`4`), broker.PublishOptions{HistorySize: 10}); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, []uint64{1, 2, 3, 4})
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pubs {
		if string(p.Data) != fmt.Sprint(p.Offset) {
			t.Fatalf("offset %d carries %s", p.Offset, p.Data)
		}
	}
}

// TestReorder feeds announcements to a subscribed channel out of order,
// repeated, and from a replaced epoch: deliveries come in offset order,
// once each, without reading history (the gap timer is far away).
func TestReorder(t *testing.T) {
	b, s := testBroker(t, time.Hour)
	ctx := context.Background()
	const ch = "reorder"
	if err := b.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	b.subMu.Lock()
	c := b.live[b.livePrefix+token(ch)]
	b.subMu.Unlock()
	announce := func(off uint64, epoch string) {
		m := &gonats.Msg{Header: gonats.Header{}, Data: []byte(fmt.Sprint(off))}
		setPublication(m.Header, broker.Publication{Offset: off, Time: time.Now()}, epoch)
		b.onLive(c, m)
	}
	const e1, e2 = "EPOCHONE", "EPOCHTWO"
	steps := []struct {
		off   uint64
		epoch string
		want  []uint64
	}{
		{3, e1, nil}, // the channel was empty: 1 and 2 are missing
		{1, e1, []uint64{1}},
		{1, e1, []uint64{1}}, // duplicate
		{2, e1, []uint64{1, 2, 3}},
		{5, e1, []uint64{1, 2, 3}},
		{4, e1, []uint64{1, 2, 3, 4, 5}},
		{1, e2, []uint64{1, 2, 3, 4, 5, 1}}, // the chain restarted
		{6, e1, []uint64{1, 2, 3, 4, 5, 1}}, // straggler of the old epoch
		{2, e2, []uint64{1, 2, 3, 4, 5, 1, 2}},
	}
	for i, st := range steps {
		announce(st.off, st.epoch)
		if got := s.offsets(); !slices.Equal(got, st.want) {
			t.Fatalf("step %d (%d of %s): delivered %v, want %v", i, st.off, st.epoch, got, st.want)
		}
	}
	c.mu.Lock()
	armed := c.timer != nil
	c.mu.Unlock()
	if armed {
		t.Fatal("gap timer armed with nothing held back")
	}
}

func TestNextFloor(t *testing.T) {
	tests := []struct {
		name          string
		floor, offset uint64
		size          int
		want          uint64
	}{
		{"first", 1, 1, 3, 1},
		{"filling", 1, 3, 3, 1},
		{"full", 1, 4, 3, 2},
		{"shrink keeps newest", 2, 5, 2, 4},
		{"grow brings nothing back", 4, 6, 10, 4},
		{"size 0 keeps none", 4, 6, 0, 7},
		{"after size 0", 7, 7, 2, 7},
	}
	for _, tc := range tests {
		if got := nextFloor(tc.floor, tc.offset, tc.size); got != tc.want {
			t.Errorf("%s: nextFloor(%d, %d, %d) = %d, want %d", tc.name, tc.floor, tc.offset, tc.size, got, tc.want)
		}
	}
}

// TestIdempotencyJoinsAClaim: a publisher that finds a key claimed but not
// settled (its claimant died, or is still at work) publishes under the
// claim's generation, so that the stream's de-duplication stores the key's
// publication once whichever publisher gets there.
func TestIdempotencyJoinsAClaim(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	ctx := context.Background()
	b, err := New(ctx, Options{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 10, IdempotencyKey: "k", IdempotencyWindow: time.Minute}

	// A claim left by a publisher that died before storing: the repeat
	// stores the publication.
	if _, _, found, err := b.reserveKey(ctx, "c", "k", time.Minute); err != nil || found {
		t.Fatalf("reserve: %v %v", found, err)
	}
	first, err := b.Publish(ctx, "c", []byte(`1`), opts)
	if err != nil || first.Offset != 1 {
		t.Fatalf("publish on an abandoned claim: %+v %v", first, err)
	}
	if again, err := b.Publish(ctx, "c", []byte(`1`), opts); !errors.Is(err, broker.ErrDuplicate) || again != first {
		t.Fatalf("repeat after settling: %+v %v", again, err)
	}

	// A claim whose publication was stored but not settled (the claimant
	// died right after storing): the repeat's store is de-duplicated by
	// the stream and answers the stored position.
	gen, _, found, err := b.reserveKey(ctx, "d", "k", time.Minute)
	if err != nil || found {
		t.Fatalf("reserve: %v %v", found, err)
	}
	r, err := b.currentStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pub := broker.Publication{Offset: 1, Data: []byte(`1`), Time: time.Now()}
	if _, err := b.store(ctx, r, b.histPrefix+token("d"), pub, tip{stream: r.name, epoch: "E"}, 1, 0, msgID("d", "k", gen)); err != nil {
		t.Fatal(err)
	}
	got, err := b.Publish(ctx, "d", []byte(`2`), opts)
	if !errors.Is(err, broker.ErrDuplicate) || got != (broker.Position{Offset: 1, Epoch: "E"}) {
		t.Fatalf("repeat of a stored, unsettled key: %+v %v", got, err)
	}
	if h, err := b.History(ctx, "d", broker.HistoryQuery{Limit: -1}); err != nil || len(h.Publications) != 1 {
		t.Fatalf("history %+v %v", h, err)
	}
}
