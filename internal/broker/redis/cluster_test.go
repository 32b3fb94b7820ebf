package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/brokertest"
	"github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

func TestClusterConformance(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	brokertest.Run(t, func(t *testing.T) broker.Broker { return newBroker(t, c.URL(), redis.Options{}) })
}

func TestClusterPresenceConformance(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	brokertest.RunPresence(t, func(t *testing.T) broker.PresenceStore { return newBroker(t, c.URL(), redis.Options{}) })
}

// channelsOnMasters returns, for each master of c, a channel name whose
// keys it serves.
func channelsOnMasters(t *testing.T, c *testenv.RedisCluster, prefix string) []string {
	t.Helper()
	chans := make([]string, len(c.Masters))
	found := 0
	for i := 0; found < len(chans) && i < 1000; i++ {
		ch := fmt.Sprint(prefix, i)
		owner := c.Owner(t, c.SlotOf(t, ch))
		if chans[owner] == "" {
			chans[owner] = ch
			found++
		}
	}
	if found < len(chans) {
		t.Fatalf("no channel for every master: %v", chans)
	}
	return chans
}

// TestClusterChannelsOnEveryMaster: channels whose keys live on different
// masters all publish, deliver, keep history and presence, and take events;
// the keys are where their slot says.
func TestClusterChannelsOnEveryMaster(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	ctx := context.Background()
	a, recA := startNode(t, c.URL(), redis.Options{})
	b, recB := startNode(t, c.URL(), redis.Options{})
	chans := channelsOnMasters(t, c, "spread-")
	for _, ch := range chans {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	opts := broker.PublishOptions{HistorySize: 100}
	for i, ch := range chans {
		pos := publish(t, a, ch, 20, opts)
		if pos.Offset != 20 {
			t.Fatalf("%s: position %+v", ch, pos)
		}
		checkDense(t, recB.wait(t, ch, 20), 1, pos.Epoch)
		h, err := a.History(ctx, ch, broker.HistoryQuery{Limit: -1, Since: &broker.Position{Offset: 15, Epoch: pos.Epoch}})
		if err != nil || offsets(h.Publications) != "16 17 18 19 20" {
			t.Fatalf("%s: history %s, %v", ch, offsets(h.Publications), err)
		}
		if err := a.PublishEvent(ctx, ch, []byte(`{"join":"x"}`)); err != nil {
			t.Fatal(err)
		}
		for _, node := range []*redis.Broker{a, b} {
			if err := node.AddPresence(ctx, ch, broker.ClientInfo{Client: fmt.Sprintf("%p", node), User: "u"}, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		st, err := b.PresenceStats(ctx, ch)
		if err != nil || st != (broker.PresenceStats{Clients: 2, Users: 1}) {
			t.Fatalf("%s: presence %+v %v", ch, st, err)
		}
		raw := rawClient(t, c.Masters[i].URL())
		if n, err := raw.Do(ctx, raw.B().Exists().Key("switchboard:{"+ch+"}:meta", "switchboard:{"+ch+"}:history", "switchboard:{"+ch+"}:presence").Build()).AsInt64(); err != nil || n != 3 {
			t.Fatalf("%s: %d keys on master %d (%v)", ch, n, i, err)
		}
	}
	deadline := time.Now().Add(waitFor)
	for _, ch := range chans {
		for {
			recB.mu.Lock()
			ev := strings.Join(recB.events[ch], ",")
			recB.mu.Unlock()
			if ev == `{"join":"x"}` {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: events %q", ch, ev)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for _, ch := range chans {
		if n := len(recB.get(ch)); n != 20 {
			t.Fatalf("%s: %d deliveries, want 20", ch, n)
		}
		if n := len(recA.get(ch)); n != 0 {
			t.Fatalf("%s: the unsubscribed node got %d deliveries", ch, n)
		}
		if err := b.Unsubscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		publish(t, a, ch, 1, opts)
	}
	time.Sleep(100 * time.Millisecond)
	for _, ch := range chans {
		if n := len(recB.get(ch)); n != 20 {
			t.Fatalf("%s: %d deliveries after unsubscribe, want 20", ch, n)
		}
	}
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClusterControl: control messages reach every node of a cluster.
func TestClusterControl(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	ctx := context.Background()
	var nodes []*redis.Broker
	var recs []*controlRecorder
	for range 2 {
		b := newBroker(t, c.URL(), redis.Options{Logger: testLogger(t)})
		rec := &controlRecorder{recorder: newRecorder()}
		if err := b.Start(ctx, rec); err != nil {
			t.Fatal(err)
		}
		nodes, recs = append(nodes, b), append(recs, rec)
	}
	if err := nodes[0].PublishControl(ctx, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		deadline := time.Now().Add(waitFor)
		for rec.got() != `{"a":1}` {
			if time.Now().After(deadline) {
				t.Fatalf("control messages %q", rec.got())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestClusterReshard: the slot of a subscribed channel moves to another
// master while publications go on; the master unsubscribes the node, which
// subscribes on the new master and delivers everything once, in order.
func TestClusterReshard(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	ctx := context.Background()
	sub, rec := startNode(t, c.URL(), redis.Options{})
	pubNode := newBroker(t, c.URL(), redis.Options{})
	opts := broker.PublishOptions{HistorySize: 1000}
	const ch = "moving"
	if err := sub.Subscribe(ctx, ch); err != nil {
		t.Fatal(err)
	}
	slot := c.SlotOf(t, ch)
	done := make(chan int)
	stop := make(chan struct{})
	go func() {
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := pubNode.Publish(ctx, ch, []byte(`1`), opts)
			if err != nil && !errors.Is(err, broker.ErrUnavailable) {
				t.Error(err)
				return
			}
			if err == nil {
				n++
			}
			time.Sleep(time.Millisecond)
		}
	}()
	from := c.Owner(t, slot)
	for hop := 1; hop <= 3; hop++ {
		time.Sleep(100 * time.Millisecond)
		to := (from + 1) % len(c.Masters)
		c.MoveSlot(t, slot, from, to)
		from = to
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	n := <-done
	got := rec.wait(t, ch, n)
	checkDense(t, got, 1, got[0].epoch)
	// After the moves, publications reach the node live.
	pos := publish(t, pubNode, ch, 5, opts)
	got = rec.wait(t, ch, n+5)
	checkDense(t, got, 1, pos.Epoch)
	time.Sleep(100 * time.Millisecond)
	if m := len(rec.get(ch)); m != n+5 {
		t.Fatalf("%d deliveries, want %d", m, n+5)
	}
	t.Logf("%d publications over 3 slot moves", n+5)
}

// TestClusterMasterRestart: a master serving a subscribed channel is
// killed and comes back. With its data kept the node delivers what was
// published, once and in order; with its data lost the node sees the new
// epoch. Channels on the other masters go on meanwhile.
func TestClusterMasterRestart(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{AOF: keep})
			ctx := context.Background()
			sub, rec := startNode(t, c.URL(), redis.Options{})
			pubNode := newBroker(t, c.URL(), redis.Options{})
			opts := broker.PublishOptions{HistorySize: 100}
			chans := channelsOnMasters(t, c, "restart-")
			for _, ch := range chans {
				if err := sub.Subscribe(ctx, ch); err != nil {
					t.Fatal(err)
				}
			}
			before := make([]broker.Position, len(chans))
			for i, ch := range chans {
				before[i] = publish(t, pubNode, ch, 3, opts)
				rec.wait(t, ch, 3)
			}
			c.Masters[0].Kill()
			c.Masters[0].Restart(t)
			c.WaitHealthy(t)
			for i, ch := range chans {
				pos := publish(t, pubNode, ch, 3, opts)
				got := rec.wait(t, ch, 6)
				if keep || i != 0 {
					if pos.Epoch != before[i].Epoch || pos.Offset != 6 {
						t.Fatalf("%s: after restart %+v, before %+v", ch, pos, before[i])
					}
					checkDense(t, got, 1, pos.Epoch)
					continue
				}
				if pos.Epoch == before[i].Epoch || pos.Offset != 3 {
					t.Fatalf("%s: after data loss %+v, before %+v", ch, pos, before[i])
				}
				checkDense(t, got[:3], 1, before[i].Epoch)
				checkDense(t, got[3:], 1, pos.Epoch)
			}
			time.Sleep(100 * time.Millisecond)
			for _, ch := range chans {
				if n := len(rec.get(ch)); n != 6 {
					t.Fatalf("%s: %d deliveries, want 6", ch, n)
				}
			}
			if err := sub.Ping(ctx); err != nil {
				t.Fatalf("ping after restart: %v", err)
			}
		})
	}
}

// TestClusterURL: a cluster has database 0 only; one seed is enough.
func TestClusterURL(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := redis.New(ctx, redis.Options{URL: "redis://" + c.Masters[1].Addr() + "/2"}); err == nil || errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("a cluster with database 2: %v", err)
	}
	b, rec := startNode(t, "redis://"+c.Masters[1].Addr(), redis.Options{})
	chans := channelsOnMasters(t, c, "seed-")
	for _, ch := range chans {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
		pos := publish(t, b, ch, 2, broker.PublishOptions{})
		checkDense(t, rec.wait(t, ch, 2), 1, pos.Epoch)
	}
}

// TestClusterFailover: a master serving subscribed channels dies and its
// replica takes over. Publishing resumes in the same epoch, and the node,
// which subscribes on the promoted replica, receives every publication
// once and in order; channels of the other masters are not disturbed.
func TestClusterFailover(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{Replicas: 1})
	ctx := context.Background()
	sub, rec := startNode(t, c.URL(), redis.Options{})
	pubNode := newBroker(t, c.URL(), redis.Options{})
	opts := broker.PublishOptions{HistorySize: 100}
	chans := channelsOnMasters(t, c, "failover-")
	for _, ch := range chans {
		if err := sub.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	before := make([]broker.Position, len(chans))
	for i, ch := range chans {
		before[i] = publish(t, pubNode, ch, 5, opts)
		rec.wait(t, ch, 5)
	}
	// Wait until the replica has everything, so the failover loses nothing.
	c.WaitReplicated(t)
	c.Server(t, c.SlotOf(t, chans[0])).Kill()
	for i, ch := range chans {
		// publish retries while the cluster is down (full coverage).
		deadline := time.Now().Add(3 * waitFor)
		var pos broker.Position
		for {
			var err error
			pos, err = pubNode.Publish(ctx, ch, []byte(`"after"`), opts)
			if err == nil {
				break
			}
			if !errors.Is(err, broker.ErrUnavailable) || time.Now().After(deadline) {
				t.Fatalf("%s: publish during failover: %v", ch, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if pos.Epoch != before[i].Epoch || pos.Offset != 6 {
			t.Fatalf("%s: after failover %+v, before %+v", ch, pos, before[i])
		}
		publish(t, pubNode, ch, 4, opts)
		checkDense(t, rec.wait(t, ch, 10), 1, before[i].Epoch)
	}
	time.Sleep(100 * time.Millisecond)
	for _, ch := range chans {
		if n := len(rec.get(ch)); n != 10 {
			t.Fatalf("%s: %d deliveries, want 10", ch, n)
		}
	}
	deadline := time.Now().Add(waitFor)
	for {
		// The dead master's connection is given up once it serves no slot.
		err := sub.Ping(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
