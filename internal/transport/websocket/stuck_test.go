package websocket

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
)

// deafBroker's Publish never returns on its own: only its context ends it,
// as with a broker that stopped answering.
type deafBroker struct {
	*memory.Broker
}

func (deafBroker) Publish(ctx context.Context, _ string, _ []byte, _ broker.PublishOptions) (broker.Position, error) {
	<-ctx.Done()
	return broker.Position{}, ctx.Err()
}

// TestStuckBrokerCannotStopPings: more clients than the event loop has
// workers at most each send a publish that the broker never answers; a
// client's ping must still get its pong, because every command ends with
// the hub's command timeout and gives its worker back.
func TestStuckBrokerCannotStopPings(t *testing.T) {
	e := startEnvFull(t, ReaderEpoll, deafBroker{memory.New(memory.Options{})}, func(hc *hub.Config) {
		hc.ClientPublish = true
		hc.CommandTimeout = 200 * time.Millisecond
		hc.CommandRate = 1e6
	}, nil)
	url := e.url()

	victim := dialURL(t, url)
	stuck := make([]*client, maxWorkers+64)
	for i := range stuck {
		stuck[i] = dialURL(t, url)
	}
	for round := range 3 { // each stuck client keeps a command in flight
		for i, c := range stuck {
			c.sendText(fmt.Sprintf(`{"command":"publish","channel":"c%d","data":%d,"id":%d}`, i, round, round))
		}
	}
	victim.write(masked(ws.NewPingFrame([]byte("still there?"))))
	for {
		// The read deadline is 10 s: without command timeouts the
		// workers stay pinned and the pong never comes.
		f, err := victim.frame()
		if err != nil {
			t.Fatalf("no pong while the broker is stuck: %v", err)
		}
		if f.Header.OpCode == ws.OpPong {
			if string(f.Payload) != "still there?" {
				t.Fatalf("pong %q", f.Payload)
			}
			return
		}
	}
}
