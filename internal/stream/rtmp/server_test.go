package rtmp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// TestMaxPending: connections beyond MaxPending that have not published
// are closed at once; closing the server ends the others and Serve.
func TestMaxPending(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: slog.New(slog.DiscardHandler)})
	a, _ := stream.NewAuthorizer(stream.AuthOptions{APIKeys: []string{"k"}})
	s := New(Options{Registry: reg, Authorizer: a, MaxPending: 2, HandshakeTimeout: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	var idle []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// Wait until both are counted, then the third is refused.
	for s.pending.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("third connection not closed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("idle connection not closed by Close: %v", err)
		}
	}
}
