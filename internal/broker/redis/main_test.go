package redis_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The Redis client refreshes a cluster's topology in a goroutine
		// of its own that sleeps a few seconds after its client is closed
		// before it returns: the library's, not ours.
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
	)
}
