package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
)

// h2cClient speaks HTTP/2 without TLS from the first byte (prior
// knowledge), as a backend publishing over h2c does.
func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: p}}
}

func TestServerAPIOverCleartextHTTP2(t *testing.T) {
	ts := start(t, nil)
	sub := ts.dial()
	sub.Subscribe("h2")
	c := h2cClient()
	defer c.CloseIdleConnections()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n { // many requests in flight on one connection
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://"+ts.Addr()+"/api/publish",
				strings.NewReader(fmt.Sprintf(`{"channel":"h2","data":%d}`, i)))
			req.Header.Set("Authorization", "apikey "+testKey)
			res, err := c.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || res.ProtoMajor != 2 {
				errs <- fmt.Errorf("%s %s: %s", res.Proto, res.Status, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[float64]bool{}
	for range n {
		m := sub.Next()
		seen[m["data"].(float64)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct publications delivered, want %d", len(seen), n)
	}
	// HTTP/1.1 and WebSocket on the same port are unaffected: sub works,
	// and so does a plain request.
	if status, _ := ts.api("POST", "/api/publish", testKey, `{"channel":"h2","data":"h1"}`); status != 200 {
		t.Fatalf("HTTP/1.1 publish: %d", status)
	}
}

func TestCleartextHTTP2CanBeTurnedOff(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HTTP2Cleartext = false })
	c := h2cClient()
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+ts.Addr()+"/api/info", nil)
	req.Header.Set("Authorization", "apikey "+testKey)
	if res, err := c.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("h2c request answered with %s while http2_cleartext is off", res.Proto)
	}
}
