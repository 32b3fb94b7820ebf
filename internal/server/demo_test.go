package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDemoIcon: the demo pages link an icon, and /favicon.ico, which
// browsers ask for anyway, is there too.
func TestDemoIcon(t *testing.T) {
	ts := start(t, nil)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get("http://" + ts.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, page := range []string{"/", "/news.html", "/room.html", "/broadcast.html", "/watch.html"} {
		if _, body := get(page); !strings.Contains(body, `<link rel="icon" href="favicon.svg"`) {
			t.Errorf("%s links no icon", page)
		}
	}
	for path, ctype := range map[string]string{"/favicon.svg": "image/svg+xml", "/favicon.ico": "image/"} {
		resp, body := get(path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("%s: %d %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}
