package server_test

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	code := m.Run()
	// Keep-alive connections idle in the default HTTP client are the
	// client's pool, not a leak.
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		err := goleak.Find(
			// The Redis client refreshes a cluster's topology in a
			// goroutine of its own that sleeps a few seconds after its
			// client is closed before it returns: the library's, not ours.
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		)
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
