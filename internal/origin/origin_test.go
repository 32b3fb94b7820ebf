package origin_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboardhq/switchboard/internal/origin"
)

func TestAllowed(t *testing.T) {
	p := origin.Policy{Origins: []string{"https://app.example/"}}
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://sb.example:8000", true}, // same origin (Host below)
		{"https://app.example", true},
		{"https://APP.example", true},
		{"https://evil.example", false},
		{"null", false},
		{"file://x", false},
		{"https://app.example.evil", false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "http://sb.example:8000/sse", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := p.Allowed(r); got != tc.ok {
			t.Errorf("%q: %v, want %v", tc.origin, got, tc.ok)
		}
	}
	any := origin.Policy{Origins: []string{"*"}}
	r := httptest.NewRequest("GET", "http://sb.example/", nil)
	r.Header.Set("Origin", "https://whoever.example")
	if !any.Allowed(r) {
		t.Error("* does not allow any origin")
	}
}

func TestCORS(t *testing.T) {
	p := origin.Policy{Origins: []string{"https://app.example"}}
	// Preflight from an allowed origin.
	r := httptest.NewRequest("OPTIONS", "http://sb.example/publish", nil)
	r.Header.Set("Origin", "https://app.example")
	w := httptest.NewRecorder()
	if p.CORS(w, r, "POST") {
		t.Fatal("preflight not answered")
	}
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "https://app.example" ||
		w.Header().Get("Access-Control-Allow-Credentials") != "true" || w.Header().Get("Access-Control-Allow-Methods") != "POST" {
		t.Fatalf("preflight: %d %v", w.Code, w.Header())
	}
	// A request from a foreign origin.
	r = httptest.NewRequest("POST", "http://sb.example/publish", nil)
	r.Header.Set("Origin", "https://evil.example")
	w = httptest.NewRecorder()
	if p.CORS(w, r, "POST") || w.Code != http.StatusForbidden || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("foreign origin: %d %v", w.Code, w.Header())
	}
	// Same origin passes without CORS headers being needed.
	r = httptest.NewRequest("GET", "http://sb.example/sse", nil)
	w = httptest.NewRecorder()
	if !p.CORS(w, r, "GET") {
		t.Fatal("no-origin request refused")
	}
}
