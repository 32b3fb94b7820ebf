package nats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// The connection's state and how errors are reported and retried.

func (b *Broker) connLost() {
	b.connMu.Lock()
	b.connEnd()
	b.connMu.Unlock()
}

// connBack starts a new connection lifetime after a reconnection.
func (b *Broker) connBack() {
	b.connMu.Lock()
	b.connEnd()
	b.conn, b.connEnd = context.WithCancel(b.life)
	b.connMu.Unlock()
}

// fail wraps err for operation op, adding broker.ErrUnavailable when the
// server cannot be reached or cannot answer now.
func (b *Broker) fail(op string, err error) error {
	if b.closed.Load() && !errors.Is(err, broker.ErrClosed) {
		return fmt.Errorf("nats broker: %s: %w: %w", op, broker.ErrClosed, err)
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) {
		return fmt.Errorf("nats broker: %s: %w", op, err)
	}
	if b.unavailable(err) {
		return fmt.Errorf("nats broker: %s: %w: %w", op, broker.ErrUnavailable, err)
	}
	return fmt.Errorf("nats broker: %s: %w", op, err)
}

// connected returns an error wrapping broker.ErrUnavailable (or
// broker.ErrClosed) for operation op when the connection is known not to be
// up: a request sent now would only wait for its timeout.
func (b *Broker) connected(op string) error {
	st := b.nc.Status()
	switch {
	case st == gonats.CONNECTED:
		return nil
	case b.closed.Load():
		return fmt.Errorf("nats broker: %s: %w", op, broker.ErrClosed)
	default:
		return fmt.Errorf("nats broker: %s: %w: connection %s", op, broker.ErrUnavailable, st)
	}
}

func (b *Broker) unavailable(err error) bool {
	if !b.nc.IsConnected() {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	for _, target := range []error{
		gonats.ErrConnectionClosed, gonats.ErrConnectionReconnecting, gonats.ErrConnectionDraining,
		gonats.ErrReconnectBufExceeded, gonats.ErrNoServers, gonats.ErrTimeout, gonats.ErrNoResponders,
		jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// JetStream error codes the broker reacts to.
const (
	codeStreamNotMatch        = 10060 // Nats-Expected-Stream names another stream
	codeStreamSubjectOverlap  = 10065 // another stream has these subjects
	codeWrongLastSequence     = 10071 // Nats-Expected-Last-Subject-Sequence failed
	codeWrongLastSequenceRepl = 10164 // the same, on replicated streams of newer servers
)

func apiCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// isConflict reports whether a conditional write lost the race for the
// channel's next offset.
func isConflict(err error) bool {
	c := apiCode(err)
	return c == codeWrongLastSequence || c == codeWrongLastSequenceRepl
}

// isStreamGone reports whether err means the stream the broker uses no
// longer exists (or was replaced), so it must be looked up again.
func isStreamGone(err error) bool {
	return err != nil && (errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, gonats.ErrStreamNotFound) || // from the key-value watcher
		errors.Is(err, gonats.ErrNoStreamResponse) ||
		apiCode(err) == codeStreamNotMatch)
}

// backoff returns a jittered pause before publish attempt n, growing to
// 50 ms, so that publishers on several nodes that keep colliding spread out.
func backoff(n int) time.Duration {
	d := min(time.Millisecond<<min(n-3, 6), 50*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
