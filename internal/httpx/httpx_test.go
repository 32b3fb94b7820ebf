package httpx_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchboardhq/switchboard/internal/httpx"
	"github.com/switchboardhq/switchboard/internal/origin"
)

func TestGate(t *testing.T) {
	var draining atomic.Bool
	serve := func(drop bool) *httptest.Server {
		g := &httpx.Gate{
			Guard:             origin.New(origin.Config{Origins: []string{"https://app.example"}}),
			Method:            http.MethodPost,
			Draining:          draining.Load,
			DropWhileDraining: drop,
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if g.Admit(w, r) {
				_, _ = io.WriteString(w, "served")
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	answering, dropping := serve(false), serve(true)
	tests := []struct {
		name     string
		srv      *httptest.Server
		method   string
		host     string
		origin   string
		draining bool
		status   int
		body     string
		header   [2]string // a header the answer must carry
	}{
		{"served", answering, "POST", "", "", false, 200, "served", [2]string{"Cache-Control", "no-store"}},
		{"allowed origin", answering, "POST", "", "https://app.example", false, 200, "served", [2]string{"Access-Control-Allow-Origin", "https://app.example"}},
		{"preflight", answering, "OPTIONS", "", "https://app.example", false, 204, "", [2]string{"Access-Control-Allow-Methods", "POST"}},
		{"wrong method", answering, "GET", "", "", false, 405, `{"error":{"code":400,`, [2]string{"Allow", "POST, OPTIONS"}},
		{"foreign origin", answering, "POST", "", "https://evil.example", false, 403, `"origin not allowed`, [2]string{"Content-Type", "application/json"}},
		{"foreign host", answering, "POST", "evil.example", "", false, 421, `"host not allowed`, [2]string{"Content-Type", "application/json"}},
		{"foreign host while draining", answering, "POST", "evil.example", "", true, 421, `"host not allowed`, [2]string{"Content-Type", "application/json"}},
		{"draining", answering, "POST", "", "", true, 503, `{"error":{"code":503,`, [2]string{"Retry-After", "1"}},
		{"draining, dropped", dropping, "POST", "", "", true, 0, "", [2]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			draining.Store(tc.draining)
			req, _ := http.NewRequest(tc.method, tc.srv.URL+"/x", strings.NewReader("{}"))
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := tc.srv.Client().Do(req)
			if tc.status == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d, want a dropped connection", resp.StatusCode)
				}
				if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") {
					t.Fatalf("want a dropped connection, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, tc.status, tc.body)
			}
			if k, v := tc.header[0], tc.header[1]; k != "" && resp.Header.Get(k) != v {
				t.Fatalf("%s: %q, want %q", k, resp.Header.Get(k), v)
			}
		})
	}
}
