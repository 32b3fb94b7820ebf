package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestWHIPMounted: /whip/ and /whep/ answer on the node with the
// documented statuses, 503 when WebRTC is off; the metrics list the
// sessions; /watch.html's hls.js is served.
func TestWHIPMounted(t *testing.T) {
	offer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
	cases := map[string]struct {
		webrtc              bool
		method, path, ctype string
		body                string
		want                int
	}{
		"garbage":          {true, "POST", "/whip/live/a?key=" + testKey, "application/sdp", "nope", 400},
		"no key":           {true, "POST", "/whip/live/a", "application/sdp", offer, 401},
		"content type":     {true, "POST", "/whep/live/a", "text/plain", offer, 415},
		"whep of nothing":  {true, "POST", "/whep/live/a", "application/sdp", offer, 404},
		"unknown session":  {true, "DELETE", "/whep/live/a/abc", "", "", 404},
		"webrtc off":       {false, "POST", "/whip/live/a?key=" + testKey, "application/sdp", offer, 503},
		"hls.js is served": {true, "GET", "/vendor/hls.light.min.js", "", "", 200},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ts := start(t, func(cfg *config.Config) { cfg.WebRTC = c.webrtc; cfg.WebRTCLoopback = true })
			req, _ := http.NewRequest(c.method, "http://"+ts.Addr()+c.path, strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Fatalf("got %d %q, want %d", res.StatusCode, b, c.want)
			}
		})
	}
	ts := start(t, func(cfg *config.Config) { cfg.WebRTCLoopback = true })
	res, err := http.Get("http://" + ts.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, m := range []string{"switchboard_whip_sessions 0", "switchboard_whep_sessions 0", "switchboard_whep_forwarded_packets_total 0"} {
		if !strings.Contains(string(b), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}
