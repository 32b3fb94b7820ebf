package client

import "time"

// Backoff says how long the client waits before each reconnect attempt:
// exponential with full jitter, a uniformly random delay between zero and
// Min·2^attempt (capped at Max), so that the clients of a node that
// restarts do not all come back at the same moment. The attempt count goes
// back to zero only once a connection has stayed up for Stable: a server
// that accepts and then drops each connection at once is retried ever
// more slowly, not in a tight loop.
type Backoff struct {
	// Min is the cap of the first delay. Default 500 ms.
	Min time.Duration
	// Max is the largest cap. Default 10 s.
	Max time.Duration
	// Stable is how long a connection must stay up for the attempt count
	// to start again from zero. Default 5 s.
	Stable time.Duration
}

// withDefaults fills the zero fields.
func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = 500 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Second
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.Stable <= 0 {
		b.Stable = 5 * time.Second
	}
	return b
}

// Delay returns the wait before reconnect attempt number attempt (0 for the
// first after a connection was lost): random()·min(Max, Min·2^attempt).
// random returns a number in [0, 1); the client passes math/rand/v2's
// Float64 unless Options.Random is set. Zero fields take their defaults.
func (b Backoff) Delay(attempt int, random func() float64) time.Duration {
	b = b.withDefaults()
	ceil := b.Min
	for i := 0; i < attempt && ceil < b.Max; i++ {
		ceil *= 2
	}
	if ceil > b.Max {
		ceil = b.Max
	}
	r := random()
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	return time.Duration(r * float64(ceil))
}
