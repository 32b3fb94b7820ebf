package nats

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gonats "github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// Headers of stored and live messages. Values are decimal integers except
// the epoch.
const (
	hdrOffset = "Sb-Offset" // the channel offset
	hdrEpoch  = "Sb-Epoch"  // the channel epoch
	hdrTime   = "Sb-Time"   // when the publication was accepted, Unix nanoseconds
	hdrPrev   = "Sb-Prev"   // stored only: stream sequence of the previous message of the channel (0: none)
	hdrFloor  = "Sb-Floor"  // stored only: the oldest offset the channel's history keeps as of this message
	hdrTTL    = "Sb-Ttl"    // stored only: the channel's history TTL, nanoseconds
	hdrEvent  = "Sb-Event"  // live only: the message is an event, not a publication
)

const hexDigits = "0123456789ABCDEF"

// token encodes s as one subject token that is also a valid key-value key:
// ASCII letters, digits and '-' stay, every other byte becomes '_' and two
// upper-case hex digits. Distinct inputs give distinct tokens.
func token(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if !tokenSafe(s[i]) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// validPrefix reports whether p is a usable subject prefix: tokens of ASCII
// letters, digits, '-' and '_' separated by dots.
func validPrefix(p string) bool {
	if p == "" {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			if !tokenSafe(tok[i]) && tok[i] != '_' {
				return false
			}
		}
	}
	return true
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// randomID returns n random bytes in base32 (upper-case letters and digits).
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return b32.EncodeToString(b)
}

// newEpoch returns a fresh random epoch name.
func newEpoch() string { return randomID(6) }

// stored is one message of a channel's chain as read from the stream.
type stored struct {
	seq   uint64 // stream sequence
	prev  uint64 // stream sequence of the previous message of the chain
	pub   broker.Publication
	epoch string
	floor uint64        // oldest offset the history keeps as of this message
	ttl   time.Duration // history TTL asked by this publication
}

var errNotOurs = errors.New("message without switchboard headers")

// parseStored decodes a stored message.
func parseStored(seq uint64, h gonats.Header, data []byte) (stored, error) {
	st := stored{seq: seq, epoch: h.Get(hdrEpoch)}
	var err error
	if st.epoch == "" {
		return st, errNotOurs
	}
	if st.pub, err = parsePublication(h, data); err != nil {
		return st, err
	}
	if st.prev, err = strconv.ParseUint(h.Get(hdrPrev), 10, 64); err != nil {
		return st, fmt.Errorf("header %s: %w", hdrPrev, err)
	}
	floor, err := strconv.ParseUint(h.Get(hdrFloor), 10, 64)
	if err != nil {
		return st, fmt.Errorf("header %s: %w", hdrFloor, err)
	}
	ttl, err := strconv.ParseInt(h.Get(hdrTTL), 10, 64)
	if err != nil {
		return st, fmt.Errorf("header %s: %w", hdrTTL, err)
	}
	st.floor, st.ttl = floor, time.Duration(ttl)
	return st, nil
}

// parsePublication decodes the offset, time and data shared by stored and
// live messages.
func parsePublication(h gonats.Header, data []byte) (broker.Publication, error) {
	off, err := strconv.ParseUint(h.Get(hdrOffset), 10, 64)
	if err != nil {
		return broker.Publication{}, fmt.Errorf("header %s: %w", hdrOffset, err)
	}
	ns, err := strconv.ParseInt(h.Get(hdrTime), 10, 64)
	if err != nil {
		return broker.Publication{}, fmt.Errorf("header %s: %w", hdrTime, err)
	}
	return broker.Publication{Offset: off, Data: data, Time: time.Unix(0, ns)}, nil
}

// setPublication writes the headers shared by stored and live messages.
func setPublication(h gonats.Header, pub broker.Publication, epoch string) {
	h.Set(hdrOffset, strconv.FormatUint(pub.Offset, 10))
	h.Set(hdrEpoch, epoch)
	h.Set(hdrTime, strconv.FormatInt(pub.Time.UnixNano(), 10))
}
