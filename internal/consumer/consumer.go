// Package consumer holds what the asynchronous consumers share: the
// publish function they call, the check of one row or record, the policy
// for bad ones and the retry pause. The consumers themselves live in
// subpackages: postgres (an outbox table) and kafka (topics of a consumer
// group).
//
// A consumer publishes each row or record with an idempotency key, given
// by the application or derived from where the row or record sits, and
// only then forgets it (deletes the row, commits the offset). A crash in
// between makes the next consumer publish it again with the same key,
// which the broker turns into a no-op: the effect is exactly once within
// the idempotency window.
package consumer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// PublishFunc publishes data to channel with an idempotency key, as the
// hub's PublishOnce does. duplicate reports that key was seen on channel
// within the idempotency window, so nothing was published now. An error
// that is a *protocol.Error other than 503 means the publication can never
// succeed (an unknown namespace, say); any other error is worth a retry.
type PublishFunc func(ctx context.Context, channel string, data []byte, key string) (duplicate bool, err error)

// Result is what became of one row or record.
type Result string

// The results, also the values of the result label of the
// consumer_records_total metric.
const (
	// Published: the publication was made now.
	Published Result = "published"
	// Duplicate: its idempotency key was seen within the window (the row
	// or record was published before a crash or a rebalance).
	Duplicate Result = "duplicate"
	// Invalid: the row or record can never be published and was skipped.
	Invalid Result = "invalid"
)

// ErrInvalid is wrapped by the errors Check returns and by Publish's error
// for a row or record that can never be published.
var ErrInvalid = errors.New("consumer: invalid record")

// MaxDataSize is the largest data a row or record may carry, in bytes: the
// server API's default body limit, which the brokers are set up to carry.
const MaxDataSize = 1 << 20

// Check reports why channel, data and key cannot be published, or nil: a
// channel that breaks the naming rules, data over MaxDataSize or not one
// JSON value, an idempotency key that is not 1 to 64 printable ASCII
// bytes. The error wraps ErrInvalid.
func Check(channel string, data []byte, key string) error {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, perr.Message)
	}
	if len(data) > MaxDataSize {
		return fmt.Errorf("%w: data is %d bytes, over %d", ErrInvalid, len(data), MaxDataSize)
	}
	if !json.Valid(data) {
		return fmt.Errorf("%w: data is not a JSON value", ErrInvalid)
	}
	if perr := protocol.ValidateIdempotencyKey(key); perr != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, perr.Message)
	}
	return nil
}

// Publish checks one row or record and publishes it. It returns Invalid
// with an error wrapping ErrInvalid when it can never be published (Check
// failed, or the engine refused it for good); any other error is
// temporary and the caller retries the same row or record.
func Publish(ctx context.Context, publish PublishFunc, channel string, data []byte, key string) (Result, error) {
	if err := Check(channel, data, key); err != nil {
		return Invalid, err
	}
	dup, err := publish(ctx, channel, data, key)
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) && perr.Code != protocol.ErrUnavailable.Code {
			return Invalid, fmt.Errorf("%w: %s", ErrInvalid, perr.Message)
		}
		return "", fmt.Errorf("consumer: publish to %q: %w", channel, err)
	}
	if dup {
		return Duplicate, nil
	}
	return Published, nil
}

// DerivedKey returns the idempotency key of a row or record that carries
// none: prefix and id joined by a colon, or, when that is longer than an
// idempotency key may be, prefix's SHA-256 (in hex, cut to 32 characters)
// and id.
func DerivedKey(prefix, id string) string {
	k := prefix + ":" + id
	if len(k) <= protocol.MaxIdempotencyKeyLength {
		return k
	}
	sum := sha256.Sum256([]byte(prefix))
	return hex.EncodeToString(sum[:])[:32] + ":" + id
}

// Backoff is the pause before retry n (from 0): from 100 ms, doubling, up
// to 5 s, with full jitter so that nodes do not retry in step.
func Backoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx is done, reporting whether the wait ran out.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
