package server_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/web"
)

// TestSDKServed: /sdk/switchboard.js and /sdk/switchboard-worker.js (the
// SharedWorker of sharedConnection) are the embedded bundles, as
// JavaScript a module script may import from any origin, revalidated by
// ETag, and served with the demo off too.
func TestSDKServed(t *testing.T) {
	for _, name := range []string{"switchboard.js", "switchboard-worker.js"} {
		t.Run(name, func(t *testing.T) { testSDKServed(t, name) })
	}
}

func testSDKServed(t *testing.T, name string) {
	want, err := web.SDK.ReadFile("sdk/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(want, []byte("export {")) {
		t.Fatal("the embedded bundle exports nothing")
	}
	for _, demo := range []bool{true, false} {
		ts := start(t, func(c *config.Config) { c.Demo = demo })
		url := "http://" + ts.Addr() + "/sdk/" + name
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Origin", "https://app.example.com")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Fatalf("demo=%v: %d, %d bytes (want %d)", demo, resp.StatusCode, len(body), len(want))
		}
		for k, v := range map[string]string{
			"Content-Type":                "text/javascript; charset=utf-8",
			"Cache-Control":               "no-cache",
			"Access-Control-Allow-Origin": "*",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %q, want %q", k, got, v)
			}
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		req, _ = http.NewRequest("GET", url, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Errorf("revalidation: %d, want 304", resp.StatusCode)
		}
		ts.Stop()
	}
}
