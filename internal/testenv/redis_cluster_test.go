package testenv_test

import (
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

func TestRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{AOF: true})
	if len(c.Masters) != 3 {
		t.Fatalf("%d masters, want 3", len(c.Masters))
	}
	addrs := c.Addrs()
	if want := "redis://" + addrs[0] + "/0?addr=" + strings.ReplaceAll(addrs[1], ":", "%3A") + "&addr=" + strings.ReplaceAll(addrs[2], ":", "%3A"); c.URL() != want {
		t.Fatalf("URL %q, want %q", c.URL(), want)
	}
	// Slot 0 is in the first range, the slot of "a" (15495) in the last.
	slot := c.SlotOf(t, "a")
	if slot != 15495 {
		t.Fatalf("slot of a: %d", slot)
	}
	if got := c.Owner(t, 0); got != 0 {
		t.Fatalf("slot 0 served by master %d", got)
	}
	if got := c.Owner(t, slot); got != 2 {
		t.Fatalf("slot %d served by master %d", slot, got)
	}
	if got := do(t, c.Masters[2].Addr(), "SET a v"); got != "+OK" {
		t.Fatalf("SET on the owner: %s", got)
	}
	if got := do(t, c.Masters[0].Addr(), "GET a"); !strings.HasPrefix(got, "-MOVED 15495 ") {
		t.Fatalf("GET on another master: %s", got)
	}

	c.MoveSlot(t, slot, 2, 1)
	if got := c.Owner(t, slot); got != 1 {
		t.Fatalf("after the move slot %d is served by master %d", slot, got)
	}
	if got := do(t, c.Masters[1].Addr(), "GET a"); got != "v" {
		t.Fatalf("GET on the new owner: %s", got)
	}

	// A killed master comes back with its data and its slots.
	c.Masters[1].Kill()
	c.Masters[1].Restart(t)
	c.WaitHealthy(t)
	if got := do(t, c.Masters[1].Addr(), "GET a"); got != "v" {
		t.Fatalf("GET after restart: %s", got)
	}
}

func TestRedisClusterFailover(t *testing.T) {
	c := testenv.StartRedisCluster(t, testenv.RedisClusterOptions{Replicas: 1})
	if len(c.Replicas) != 3 || len(c.Replicas[2]) != 1 {
		t.Fatalf("replicas %v", c.Replicas)
	}
	master, replica := c.Masters[2].Addr(), c.Replicas[2][0].Addr()
	if got := do(t, master, "SET a v"); got != "+OK" {
		t.Fatalf("SET: %s", got)
	}
	c.WaitReplicated(t)
	c.Masters[2].Kill()
	c.WaitHealthy(t)
	if got := do(t, replica, "GET a"); got != "v" {
		t.Fatalf("GET on the promoted replica: %s", got)
	}
	if got := do(t, c.Masters[0].Addr(), "GET a"); got != "-MOVED 15495 "+replica {
		t.Fatalf("GET on another master: %s", got)
	}
}
