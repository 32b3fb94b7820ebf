package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestViewerPath: only WHEP offers and LL-HLS reads name a stream to
// redirect; a one-part WHEP path is in the "live" namespace.
func TestViewerPath(t *testing.T) {
	for name, c := range map[string]struct {
		method, path, want string
		ok                 bool
	}{
		"whep offer":           {"POST", "/whep/live/x", "live/x", true},
		"whep default ns":      {"POST", "/whep/x", "live/x", true},
		"whep session delete":  {"DELETE", "/whep/live/x/abc", "", false},
		"whep session path":    {"POST", "/whep/live/x/abc", "", false},
		"whep options":         {"OPTIONS", "/whep/live/x", "", false},
		"whip is never":        {"POST", "/whip/live/x", "", false},
		"hls playlist":         {"GET", "/hls/live/x/index.m3u8", "live/x", true},
		"hls part head":        {"HEAD", "/hls/live/x/abc_part3.mp4", "live/x", true},
		"hls post":             {"POST", "/hls/live/x/index.m3u8", "", false},
		"hls without file":     {"GET", "/hls/x", "", false},
		"hls empty":            {"GET", "/hls/", "", false},
		"hls leading slash":    {"GET", "/hls//index.m3u8", "", false},
		"other route":          {"GET", "/api/streams", "", false},
		"hls deep (not valid)": {"GET", "/hls/a/b/c/index.m3u8", "a/b/c", true},
	} {
		t.Run(name, func(t *testing.T) {
			r, _ := http.NewRequest(c.method, "http://h"+c.path, nil)
			got, ok := viewerPath(r)
			if got != c.want || ok != c.ok {
				t.Fatalf("viewerPath(%s %s) = %q, %v; want %q, %v", c.method, c.path, got, ok, c.want, c.ok)
			}
		})
	}
}

// FuzzViewerPath: any URL path gives a stream path taken from it, or
// nothing; never a panic.
func FuzzViewerPath(f *testing.F) {
	for _, s := range []string{"/whep/live/x", "/whep/x", "/hls/live/x/index.m3u8", "/hls//", "/whep/", "/hls/a"} {
		f.Add("POST", s)
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path}}
		got, ok := viewerPath(r)
		if !ok {
			if got != "" {
				t.Fatalf("not ok but %q", got)
			}
			return
		}
		if got == "" || !strings.Contains(path, strings.TrimPrefix(got, "live/")) {
			t.Fatalf("viewerPath(%s %q) = %q, not from the path", method, path, got)
		}
	})
}
