package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestStreamRoute: only WHIP and WHEP offers and LL-HLS reads name a
// stream; a one-part WHIP or WHEP path is in the "live" namespace.
func TestStreamRoute(t *testing.T) {
	for name, c := range map[string]struct {
		method, path, want string
		ok, publish        bool
	}{
		"whep offer":           {"POST", "/whep/live/x", "live/x", true, false},
		"whep default ns":      {"POST", "/whep/x", "live/x", true, false},
		"whep session delete":  {"DELETE", "/whep/live/x/abc", "", false, false},
		"whep session path":    {"POST", "/whep/live/x/abc", "", false, false},
		"whep options":         {"OPTIONS", "/whep/live/x", "", false, false},
		"whip offer":           {"POST", "/whip/live/x", "live/x", true, true},
		"whip default ns":      {"POST", "/whip/x", "live/x", true, true},
		"whip delete":          {"DELETE", "/whip/live/x/abc", "", false, false},
		"hls playlist":         {"GET", "/hls/live/x/index.m3u8", "live/x", true, false},
		"hls part head":        {"HEAD", "/hls/live/x/abc_part3.mp4", "live/x", true, false},
		"hls post":             {"POST", "/hls/live/x/index.m3u8", "", false, false},
		"hls without file":     {"GET", "/hls/x", "", false, false},
		"hls empty":            {"GET", "/hls/", "", false, false},
		"hls leading slash":    {"GET", "/hls//index.m3u8", "", false, false},
		"other route":          {"GET", "/api/streams", "", false, false},
		"hls deep (not valid)": {"GET", "/hls/a/b/c/index.m3u8", "a/b/c", true, false},
	} {
		t.Run(name, func(t *testing.T) {
			r, _ := http.NewRequest(c.method, "http://h"+c.path, nil)
			got, publish, ok := streamRoute(r)
			if got != c.want || ok != c.ok || publish != c.publish {
				t.Fatalf("streamRoute(%s %s) = %q, %v, %v; want %q, %v, %v", c.method, c.path, got, publish, ok, c.want, c.publish, c.ok)
			}
		})
	}
}

// FuzzStreamRoute: any URL path gives a stream path taken from it, or
// nothing; never a panic.
func FuzzStreamRoute(f *testing.F) {
	for _, s := range []string{"/whep/live/x", "/whip/x", "/hls/live/x/index.m3u8", "/hls//", "/whep/", "/hls/a"} {
		f.Add("POST", s)
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path}}
		got, publish, ok := streamRoute(r)
		if publish && !strings.HasPrefix(path, "/whip/") {
			t.Fatalf("publish for %q", path)
		}
		if !ok {
			if got != "" {
				t.Fatalf("not ok but %q", got)
			}
			return
		}
		if got == "" || !strings.Contains(path, strings.TrimPrefix(got, "live/")) {
			t.Fatalf("streamRoute(%s %q) = %q, not from the path", method, path, got)
		}
	})
}
