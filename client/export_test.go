package client

import "time"

// NextAttempt exposes Backoff.next to the tests.
func NextAttempt(b Backoff, attempt int, up time.Duration) int { return b.next(attempt, up) }
