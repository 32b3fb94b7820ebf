package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// backend is a real broker server the nodes of a cluster test share.
type backend struct {
	name string
	url  func() string
	// fresh starts another server of the kind, keeping its data across
	// restarts or not, and returns its URL and a function that kills and
	// restarts it.
	fresh func(t *testing.T, keep bool) (string, func())
}

func backends(t *testing.T) []backend {
	return []backend{natsBackend(t), redisBackend(t), redisClusterBackend(t)}
}

func redisBackend(t *testing.T) backend {
	var r *testenv.Redis
	return backend{
		name: "redis",
		url: func() string {
			if r == nil {
				r = testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
			}
			return r.URL()
		},
		fresh: func(t *testing.T, keep bool) (string, func()) {
			r := testenv.StartRedis(t, testenv.RedisOptions{AOF: keep})
			return r.URL(), func() { r.Kill(); r.Restart(t) }
		},
	}
}

// redisClusterBackend is a 3-master Redis Cluster; its restart kills every
// master and starts them again.
func redisClusterBackend(t *testing.T) backend {
	var c *testenv.RedisCluster
	return backend{
		name: "redis-cluster",
		url: func() string {
			if c == nil {
				c = testenv.StartRedisCluster(t, testenv.RedisClusterOptions{AOF: true})
			}
			return c.URL()
		},
		fresh: func(t *testing.T, keep bool) (string, func()) {
			c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{AOF: keep})
			return c.URL(), func() {
				for _, m := range c.Masters {
					m.Kill()
				}
				for _, m := range c.Masters {
					m.Restart(t)
				}
				c.WaitHealthy(t)
			}
		},
	}
}

func natsBackend(t *testing.T) backend {
	var n *testenv.NATS
	return backend{
		name: "nats",
		url: func() string {
			if n == nil {
				n = testenv.StartNATS(t, testenv.NATSOptions{Persist: true})
			}
			return n.URL()
		},
		fresh: func(t *testing.T, keep bool) (string, func()) {
			n := testenv.StartNATS(t, testenv.NATSOptions{Persist: keep})
			return n.URL(), func() { n.Kill(); n.Restart(t) }
		},
	}
}

// cluster starts n nodes on one broker.
func cluster(t *testing.T, url string, n int, mutate func(*config.Config)) []*testServer {
	nodes := make([]*testServer, n)
	for i := range nodes {
		nodes[i] = start(t, func(c *config.Config) {
			c.Broker = url
			c.NodeName = fmt.Sprintf("node%d", i)
			c.HistorySize = 10000
			c.HistoryTTL = time.Hour
			if mutate != nil {
				mutate(c)
			}
		})
	}
	return nodes
}

func TestCluster(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			url := be.url()
			nodes := cluster(t, url, 3, func(c *config.Config) { c.JoinLeave = true })
			a, b, c := nodes[0], nodes[1], nodes[2]

			t.Run("publication on C reaches A and B in order exactly once", func(t *testing.T) {
				sa, sb := a.dial(), b.dial()
				sa.Subscribe("x")
				sb.Subscribe("x")
				drainJoins(sa, sb)
				const n = 100
				for i := 1; i <= n; i++ {
					c.publish("x", i)
				}
				for _, s := range []*wstest.Client{sa, sb} {
					for i := 1; i <= n; i++ {
						m := s.Next()
						if m["offset"] != float64(i) || m["data"] != float64(i) {
							t.Fatalf("want %d, got %v", i, m)
						}
					}
					s.Silent(200 * time.Millisecond)
				}
			})

			t.Run("a subscriber moves between nodes 100 times and misses nothing", func(t *testing.T) {
				moveBetweenNodes(t, nodes, 100)
			})

			t.Run("presence, channels and info aggregate over nodes", func(t *testing.T) {
				pa, pb := a.dial(), b.dial()
				pa.Subscribe("room")
				pb.Subscribe("room")
				pc := c.dial()
				pc.Subscribe("room")
				waitFor(t, "presence of 3", func() bool {
					_, m := c.api("POST", "/api/presence_stats", testKey, `{"channel":"room"}`)
					return m["result"] != nil && m["result"].(map[string]any)["num_clients"] == 3.0
				})
				waitFor(t, "3 nodes in info", func() bool {
					_, m := a.api("GET", "/api/info", testKey, "")
					return len(anySlice(m["result"].(map[string]any)["nodes"])) == 3
				})
				_, m0 := a.api("GET", "/api/info", testKey, "")
				if addr := anySlice(m0["result"].(map[string]any)["nodes"])[0].(map[string]any)["address"]; addr != a.Addr() {
					t.Fatalf("node announces address %v, listens on %s", addr, a.Addr())
				}
				_, m := b.api("GET", "/api/channels", testKey, "")
				found := false
				for _, ch := range anySlice(m["result"].(map[string]any)["channels"]) {
					if ch.(map[string]any)["channel"] == "room" {
						found = ch.(map[string]any)["subscribers"] == 3.0
					}
				}
				if !found {
					t.Fatalf("channels from node b: %v", m)
				}
				// A client of node A disconnected through node C's API.
				id := pa.MustCall(map[string]any{"command": "connect"})["client"].(string)
				if status, m := c.api("POST", "/api/disconnect", testKey, fmt.Sprintf(`{"client":%q}`, id)); status != 200 {
					t.Fatalf("disconnect via another node: %d %v", status, m)
				}
				if code := pa.ExpectClose(); code != 4500 {
					t.Fatalf("close code %d", code)
				}
				waitFor(t, "presence of 2", func() bool {
					_, m := b.api("POST", "/api/presence_stats", testKey, `{"channel":"room"}`)
					return m["result"].(map[string]any)["num_clients"] == 2.0
				})
			})
		})
	}
}

// drainJoins reads join pushes that may precede publications.
func drainJoins(clients ...*wstest.Client) {
	for _, c := range clients {
		for {
			m, err := c.NextErr(300 * time.Millisecond)
			if err != nil {
				break
			}
			if m["join"] == nil && m["leave"] == nil {
				c.Requeue(m)
				break
			}
		}
	}
}

// moveBetweenNodes publishes at a steady rate through the API of rotating
// nodes while one subscriber hops from node to node, recovering each time
// with its last position.
func moveBetweenNodes(t *testing.T, nodes []*testServer, hops int) {
	var published atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			n := nodes[i%len(nodes)]
			req, _ := http.NewRequest("POST", "http://"+n.Addr()+"/api/publish", strings.NewReader(fmt.Sprintf(`{"channel":"move","data":%d}`, i)))
			req.Header.Set("Authorization", "apikey "+testKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			published.Add(1)
			time.Sleep(time.Millisecond)
		}
	}()
	var got []float64
	var since map[string]any
	for hop := 0; hop < hops; hop++ {
		c := nodes[hop%len(nodes)].dial()
		cmd := map[string]any{"command": "subscribe", "channel": "move"}
		if since != nil {
			cmd["since"] = since
		}
		res := c.MustCall(cmd)
		if since != nil && res["recovered"] != true {
			t.Fatalf("hop %d: not recovered: %v", hop, res)
		}
		if since == nil {
			got = append(got, res["offset"].(float64))
		}
		for _, p := range anySlice(res["publications"]) {
			got = append(got, p.(map[string]any)["offset"].(float64))
		}
		deadline := time.Now().Add(time.Duration(2+hop%5) * time.Millisecond)
		for time.Now().Before(deadline) {
			m, err := c.NextErr(3 * time.Millisecond)
			if err != nil {
				break
			}
			if m["channel"] == "move" && m["offset"] != nil {
				got = append(got, m["offset"].(float64))
			}
		}
		c.Conn.Close()
		since = map[string]any{"offset": got[len(got)-1], "epoch": res["epoch"]}
	}
	close(stop)
	wg.Wait()
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("offset %v followed by %v: lost or duplicated", got[i-1], got[i])
		}
	}
	t.Logf("%d hops over %d nodes: %d publications seen in order (%d published)", hops, len(nodes), len(got)-1, published.Load())
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBrokerRestart restarts the broker under two nodes. With its data kept,
// a client that reconnects recovers everything it missed; with its data
// lost, it is told it did not recover, and a client that stayed connected
// gets a reset push before the first publication of the new epoch. Nobody
// silently misses data.
func TestBrokerRestart(t *testing.T) {
	for _, be := range backends(t) {
		for _, keep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/keep=%v", be.name, keep), func(t *testing.T) {
				url, restart := be.fresh(t, keep)
				nodes := cluster(t, url, 2, nil)
				a, b := nodes[0], nodes[1]
				stay := a.dial()
				first := stay.Subscribe("r")
				for i := 1; i <= 5; i++ {
					b.publish("r", i)
				}
				for i := 1; i <= 5; i++ {
					expectPub(t, stay.Next(), "r", float64(i))
				}
				restart()
				// Publish again once the nodes reach the broker.
				var off float64
				waitFor(t, "publish after restart", func() bool {
					req, _ := http.NewRequest("POST", "http://"+b.Addr()+"/api/publish", strings.NewReader(`{"channel":"r","data":"after"}`))
					req.Header.Set("Authorization", "apikey "+testKey)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return false
					}
					defer resp.Body.Close()
					var m map[string]any
					if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&m) != nil {
						return false
					}
					off = m["result"].(map[string]any)["offset"].(float64)
					return true
				})
				// A client that comes back with its old position.
				// 503 means "retry": the node may still be reconnecting.
				back := b.dial()
				var res map[string]any
				waitFor(t, "subscribe after restart", func() bool {
					r := back.Call(map[string]any{"command": "subscribe", "channel": "r",
						"since": map[string]any{"offset": 3, "epoch": first["epoch"]}})
					if errorCode(r) == 503 {
						return false
					}
					res, _ = r["result"].(map[string]any)
					return true
				})
				if keep {
					if res["recovered"] != true || off != 6 || len(anySlice(res["publications"])) != 3 {
						t.Fatalf("data kept: offset %v, result %v", off, res)
					}
				} else if res["recovered"] != false || res["epoch"] == first["epoch"] {
					t.Fatalf("data lost: result %v", res)
				}
				// The client that stayed connected: the next publication,
				// after a reset push when the history was lost.
				waitFor(t, "the staying client to resume", func() bool {
					m, err := stay.NextErr(200 * time.Millisecond)
					if err != nil {
						return false
					}
					if keep {
						expectPub(t, m, "r", 6)
						return true
					}
					if m["reset"] == nil {
						t.Fatalf("data lost: got %v before a reset push", m)
					}
					expectPub(t, stay.Next(), "r", off)
					return true
				})
			})
		}
	}
}
