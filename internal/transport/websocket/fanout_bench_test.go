//go:build unix

package websocket

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// BenchmarkFanOut measures one publication to N idle WebSocket
// subscribers on loopback, through the hub and the event loop's
// connections, until every subscriber's write is done: wall time per
// delivery (ns/delivery) and CPU time of the whole process per delivery
// (cpu-ns/delivery), which includes the subscribers' own reads (the same
// for every build, so compare builds in one sitting). Beside it,
// BenchmarkLoopbackWrite gives the floor of one write. Run:
//
//	go test -run '^$' -bench FanOut -count 3 ./internal/transport/websocket/
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			m := metrics.New(prometheus.NewRegistry())
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			h := hub.New(hub.Config{Metrics: m, Logger: log}, memory.New(memory.Options{}), nil)
			if err := h.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			hd := NewHandler(h, Options{Logger: log, PingInterval: time.Hour, IdleTimeout: 2 * time.Hour})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: hd, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			defer func() {
				_ = srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = h.Shutdown(ctx)
				hd.Close()
			}()
			url := "ws://" + ln.Addr().String() + "/ws"
			sub := masked(ws.NewTextFrame([]byte(`{"command":"subscribe","channel":"wide","id":1}`)))
			for range n {
				nc, _, _, err := ws.Dialer{}.Dial(context.Background(), url)
				if err != nil {
					b.Fatal(err)
				}
				defer nc.Close()
				if _, err := nc.Write(sub); err != nil {
					b.Fatal(err)
				}
				go func() { _, _ = io.Copy(io.Discard, nc) }()
			}
			sent := func() float64 { return testutil.ToFloat64(m.MessagesSent) }
			for sent() < float64(n) { // the subscribe replies
				time.Sleep(time.Millisecond)
			}
			data := []byte(`{"text":"a publication of about a hundred bytes, as a small chat message or a price update is"}`)
			runtime.GC()
			cpu0 := processCPU()
			start := time.Now()
			for b.Loop() {
				want := sent() + float64(n)
				if _, err := h.Publish(context.Background(), "wide", data, "bench"); err != nil {
					b.Fatal(err)
				}
				for sent() < want { // polled, so that the wait costs no CPU
					time.Sleep(100 * time.Microsecond)
				}
			}
			d := float64(b.N * n)
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/d, "ns/delivery")
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/d, "cpu-ns/delivery")
		})
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
