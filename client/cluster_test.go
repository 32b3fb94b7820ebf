package client_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// TestCutAndRecoverAcrossThreeNodes runs three nodes on one Redis. A
// publisher makes 500 publications through the nodes' APIs in turn while
// the subscriber is disconnected 25 times and comes back each time to the
// next node: it receives every publication exactly once, in order.
func TestCutAndRecoverAcrossThreeNodes(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, startNode(t, func(c *config.Config) {
			c.Broker = r.URL()
			c.NodeName = fmt.Sprintf("node%d", i)
			c.HistorySize = 10000
			c.HistoryTTL = time.Hour
		}))
	}
	rec := newRecorder()
	c := client.New("", client.Options{
		Backoff:  fastBackoff,
		OnState:  rec.onState,
		Endpoint: client.RoundRobin(nodes[0].url(), nodes[1].url(), nodes[2].url()),
	})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	const publications, cuts = 500, 25
	first, last := cutWhilePublishing(t, c, rec, nodes, "cut", publications, cuts, nil)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	lost, dup, disorder := checkSequence(rec.pubs, first, last)
	t.Logf("3 nodes on Redis, %d connections: offsets %d..%d, %d delivered, %d lost, %d duplicated, %d gaps",
		rec.connections(), first, last, len(rec.pubs), lost, dup, len(rec.gaps))
	if lost != 0 || dup != 0 || disorder || len(rec.gaps) != 0 || uint64(len(rec.pubs)) != last-first+1 {
		t.Fatalf("lost %d, duplicated %d, out of order %v, gaps %v", lost, dup, disorder, rec.gaps)
	}
	if rec.connections() < cuts+1 {
		t.Fatalf("%d connections for %d cuts", rec.connections(), cuts)
	}
	for i, p := range rec.pubs {
		if string(p.Data) != fmt.Sprint(i) {
			t.Fatalf("publication %d carries %s", i, p.Data)
		}
	}
}
