package memory_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/brokertest"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
)

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) broker.Broker { return memory.New(memory.Options{}) })
}

func TestPresenceConformance(t *testing.T) {
	brokertest.RunPresence(t, func(t *testing.T) broker.PresenceStore { return memory.NewPresence() })
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

type nopHandler struct{}

func (nopHandler) HandlePublication(string, broker.Publication, string) {}
func (nopHandler) HandleEvent(string, []byte)                           {}

func TestHistoryTTL(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	b := memory.New(memory.Options{Now: clk.Now})
	ctx := context.Background()
	_ = b.Start(ctx, nopHandler{})
	defer b.Close(ctx)
	opts := broker.PublishOptions{HistorySize: 10, HistoryTTL: time.Minute}
	_, _ = b.Publish(ctx, "t", []byte(`1`), opts)
	clk.Add(45 * time.Second)
	_, _ = b.Publish(ctx, "t", []byte(`2`), opts)
	clk.Add(30 * time.Second) // the first is now 75 s old
	r, err := b.History(ctx, "t", broker.HistoryQuery{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Publications) != 1 || r.Publications[0].Offset != 2 || r.Position.Offset != 2 {
		t.Fatalf("after TTL: %+v", r)
	}
}

func TestHistorySizeChangeKeepsNewest(t *testing.T) {
	b := memory.New(memory.Options{})
	ctx := context.Background()
	_ = b.Start(ctx, nopHandler{})
	defer b.Close(ctx)
	for i := 0; i < 6; i++ {
		_, _ = b.Publish(ctx, "s", []byte(`0`), broker.PublishOptions{HistorySize: 4})
	}
	_, _ = b.Publish(ctx, "s", []byte(`0`), broker.PublishOptions{HistorySize: 2})
	r, _ := b.History(ctx, "s", broker.HistoryQuery{Limit: -1})
	if len(r.Publications) != 2 || r.Publications[0].Offset != 6 || r.Publications[1].Offset != 7 {
		t.Fatalf("%+v", r.Publications)
	}
}

func TestNewBrokerStartsNewEpoch(t *testing.T) {
	ctx := context.Background()
	a, b := memory.New(memory.Options{}), memory.New(memory.Options{})
	pa, _ := a.Publish(ctx, "e", []byte(`1`), broker.PublishOptions{})
	pb, _ := b.Publish(ctx, "e", []byte(`1`), broker.PublishOptions{})
	if pa.Epoch == pb.Epoch {
		t.Fatal("two brokers (a restart) share an epoch")
	}
}
