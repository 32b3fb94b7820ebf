package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/api"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// discard is a transport that drops what it is given.
type discard struct{}

func (discard) Name() string                      { return "bench" }
func (discard) WriteMessages([]hub.Message) error { return nil }
func (discard) Close(protocol.Disconnect) error   { return nil }

// BenchmarkPublish is one POST /api/publish through the API handler, the
// hub and the memory broker to one subscriber, without sockets: the
// server's own cost per publication on the API path (the HTTP parsing and
// the socket writes come on top).
func BenchmarkPublish(b *testing.B) {
	m := metrics.New(prometheus.NewRegistry())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := hub.New(hub.Config{Metrics: m, Logger: log, HistorySize: 100}, memory.New(memory.Options{}), memory.NewPresence())
	if err := h.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = h.Shutdown(context.Background()) }()
	s := h.NewSession(discard{}, hub.SessionInfo{RemoteAddr: "10.0.0.1:1"})
	s.HandleMessage([]byte(`{"id":1,"command":"subscribe","channel":"bench"}`))
	a := api.New(h, api.Options{Keys: []string{"k"}, Logger: log, Metrics: m})
	body := `{"channel":"bench","data":{"text":"0123456789012345678901234567890123456789012345678901234567890123456789"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/api/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "apikey k")
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
