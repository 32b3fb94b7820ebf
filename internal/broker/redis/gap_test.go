package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// gapWait bounds every wait for something asynchronous in these tests.
const gapWait = 15 * time.Second

// chanRecorder records deliveries per channel as "epoch/offset".
type chanRecorder struct {
	mu   sync.Mutex
	seen map[string][]broker.Publication
}

func (r *chanRecorder) HandlePublication(channel string, pub broker.Publication, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[channel] = append(r.seen[channel], pub)
}

func (r *chanRecorder) HandleEvent(string, []byte) {}

func (r *chanRecorder) offsets(channel string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]uint64, len(r.seen[channel]))
	for i, p := range r.seen[channel] {
		out[i] = p.Offset
	}
	return out
}

// waitOffset waits until channel has had offset delivered and returns
// the offsets delivered so far.
func (r *chanRecorder) waitOffset(t *testing.T, channel string, offset uint64) []uint64 {
	t.Helper()
	deadline := time.Now().Add(gapWait)
	for {
		got := r.offsets(channel)
		for _, o := range got {
			if o == offset {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: delivered %v, never offset %d", channel, got, offset)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stallRig is a started broker whose gap fills of channel "stalled" wait
// until release is called.
type stallRig struct {
	b       *Broker
	rec     *chanRecorder
	entered chan struct{} // receives when a fill of "stalled" starts waiting
	release func()
}

func newStallRig(t *testing.T, setup func(b *Broker)) *stallRig {
	t.Helper()
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), gapWait)
	defer cancel()
	b, err := New(ctx, Options{URL: r.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	rig := &stallRig{b: b, rec: &chanRecorder{seen: map[string][]broker.Publication{}}, entered: make(chan struct{}, 16)}
	gate := make(chan struct{})
	var once sync.Once
	rig.release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(rig.release) // runs before Close: a stalled fill must end
	// The hook ignores ctx on purpose: a fill must stay stalled however
	// long the rest of the test takes.
	b.beforeFill = func(_ context.Context, channel string) {
		if channel != "stalled" {
			return
		}
		rig.entered <- struct{}{}
		<-gate
	}
	if setup != nil {
		setup(b)
	}
	if err := b.Start(ctx, rig.rec); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"stalled", "free"} {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	return rig
}

// publish publishes n publications to channel through the broker.
func (rig *stallRig) publish(t *testing.T, channel string, n int, size int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := rig.b.Publish(context.Background(), channel, []byte(`0`), broker.PublishOptions{HistorySize: size}); err != nil {
			t.Fatal(err)
		}
	}
}

// publishSilently stores n publications to channel as Publish does but
// sends them to a Pub/Sub channel nobody listens to, so that subscribed
// nodes see a gap.
func (rig *stallRig) publishSilently(t *testing.T, channel string, n int, size int) {
	t.Helper()
	b := rig.b
	for i := 0; i < n; i++ {
		err := publishScript.Exec(context.Background(), b.client,
			[]string{b.metaKey(channel), b.historyKey(channel)},
			[]string{"nowhere", `0`, strconv.Itoa(size), "0", strconv.FormatInt(ms(time.Hour), 10), newEpoch()}).Error()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitStalled waits until a fill of "stalled" has started.
func (rig *stallRig) waitStalled(t *testing.T) {
	t.Helper()
	select {
	case <-rig.entered:
	case <-time.After(gapWait):
		t.Fatal("no gap fill of channel stalled started")
	}
}

// dense returns 1..n.
func dense(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// TestGapFillDoesNotBlockOtherChannels stalls the history read that fills
// a gap in one channel and checks that another channel on the same Pub/Sub
// connection keeps being delivered meanwhile, and that the stalled channel
// then gets everything, in order, once.
func TestGapFillDoesNotBlockOtherChannels(t *testing.T) {
	rig := newStallRig(t, nil)
	rig.publish(t, "stalled", 1, 100)
	rig.rec.waitOffset(t, "stalled", 1)
	rig.publishSilently(t, "stalled", 3, 100) // 2 to 4: a gap
	rig.publish(t, "stalled", 1, 100)         // 5 shows the gap
	rig.waitStalled(t)
	rig.publish(t, "stalled", 3, 100) // 6 to 8 wait behind the gap

	rig.publish(t, "free", 20, 100)
	if got := rig.rec.waitOffset(t, "free", 20); fmt.Sprint(got) != fmt.Sprint(dense(20)) {
		t.Fatalf("free channel: delivered %v", got)
	}
	if got := rig.rec.offsets("stalled"); fmt.Sprint(got) != "[1]" {
		t.Fatalf("stalled channel delivered %v while its gap was open, want [1]", got)
	}

	rig.release()
	rig.rec.waitOffset(t, "stalled", 8)
	rig.publish(t, "stalled", 1, 100) // 9: anything repeated shows before it
	if got := rig.rec.waitOffset(t, "stalled", 9); fmt.Sprint(got) != fmt.Sprint(dense(9)) {
		t.Fatalf("stalled channel: delivered %v, want %v", got, dense(9))
	}
}

// waitBuffered waits until the newest message waiting behind the gap of
// channel is at offset.
func (rig *stallRig) waitBuffered(t *testing.T, channel string, offset uint64) {
	t.Helper()
	rig.b.mu.RLock()
	s := rig.b.subs[rig.b.pubName(channel)]
	rig.b.mu.RUnlock()
	deadline := time.Now().Add(gapWait)
	for {
		s.mu.Lock()
		var last uint64
		if n := len(s.buf); n > 0 {
			last = s.buf[n-1].pub.Offset
		}
		n := len(s.buf)
		s.mu.Unlock()
		if last == offset {
			if n > rig.b.gapItems {
				t.Fatalf("%d messages wait behind the gap, bound %d", n, rig.b.gapItems)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: newest buffered offset %d, want %d", channel, last, offset)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGapBufferOverflow fills a channel's gap buffer past its bound while
// the gap's history read is stalled: the channel then catches up from
// history, and what history no longer holds shows as a jump.
func TestGapBufferOverflow(t *testing.T) {
	tests := []struct {
		name string
		size int // history size
		want []uint64
	}{
		{"history holds all", 100, dense(25)},
		{"history lost some", 3, []uint64{1, 22, 23, 24, 25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rig := newStallRig(t, func(b *Broker) { b.gapItems = 4 })
			rig.publish(t, "stalled", 1, tc.size)
			rig.rec.waitOffset(t, "stalled", 1)
			rig.publishSilently(t, "stalled", 2, tc.size) // 2 and 3
			rig.publish(t, "stalled", 1, tc.size)         // 4 opens the gap
			rig.waitStalled(t)
			rig.publish(t, "stalled", 20, tc.size) // 5 to 24 overflow the buffer
			rig.waitBuffered(t, "stalled", 24)
			rig.release()
			rig.rec.waitOffset(t, "stalled", 24)
			rig.publish(t, "stalled", 1, tc.size) // 25: anything repeated shows before it
			if got := rig.rec.waitOffset(t, "stalled", 25); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("delivered %v, want %v", got, tc.want)
			}
		})
	}
}
