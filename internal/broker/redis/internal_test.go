package redis

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

type gapRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (g *gapRecorder) HandlePublication(_ string, pub broker.Publication, epoch string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = append(g.seen, fmt.Sprintf("%s/%d", epoch, pub.Offset))
}

func (g *gapRecorder) HandleEvent(string, []byte) {}

// TestGapsShow drives the delivery state directly: what history still
// holds is delivered, what it lost shows as a jump in offsets, a
// publication delivered already is dropped, and a new epoch passes.
func TestGapsShow(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, Options{URL: r.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	rec := &gapRecorder{}
	b.handler = rec
	var top broker.Position
	for i := 0; i < 5; i++ {
		if top, err = b.Publish(ctx, "g", []byte(`0`), broker.PublishOptions{HistorySize: 2}); err != nil {
			t.Fatal(err)
		}
	}
	e := top.Epoch
	s := &subscription{channel: "g", ready: true, epoch: e, offset: 1}
	// settle waits until no gap of s is open: fills run on their own
	// goroutine.
	settle := func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.Lock()
			filling := s.filling
			s.mu.Unlock()
			if !filling {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("gap still open")
			}
			time.Sleep(time.Millisecond)
		}
	}
	deliver := func(offset uint64, epoch string) {
		b.offer(s, item{kind: kindPublication, epoch: epoch, pub: broker.Publication{Offset: offset}})
	}
	steps := []struct {
		name string
		do   func()
		want string // everything seen so far
	}{
		{"catch up what history holds", func() { b.catchUp(s, e, 5) }, fmt.Sprintf("[%s/4 %s/5]", e, e)},
		{"drop a repeat", func() { deliver(5, e) }, fmt.Sprintf("[%s/4 %s/5]", e, e)},
		{"jump past what history lost", func() {
			// 6 to 10 published; history keeps 9 and 10 only.
			for i := 0; i < 5; i++ {
				if _, err := b.Publish(ctx, "g", []byte(`0`), broker.PublishOptions{HistorySize: 2}); err != nil {
					t.Fatal(err)
				}
			}
			deliver(10, e)
		}, fmt.Sprintf("[%s/4 %s/5 %s/9 %s/10]", e, e, e, e)},
		{"new epoch passes", func() { deliver(3, "other") }, fmt.Sprintf("[%s/4 %s/5 %s/9 %s/10 other/3]", e, e, e, e)},
		{"next in the new epoch", func() { deliver(4, "other") }, fmt.Sprintf("[%s/4 %s/5 %s/9 %s/10 other/3 other/4]", e, e, e, e)},
	}
	for _, st := range steps {
		st.do()
		settle()
		rec.mu.Lock()
		got := fmt.Sprint(rec.seen)
		rec.mu.Unlock()
		if got != st.want {
			t.Fatalf("%s: seen %s, want %s", st.name, got, st.want)
		}
	}
}
