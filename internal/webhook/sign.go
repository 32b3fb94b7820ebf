package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// SignatureHeader carries the signature of a webhook request's body.
const SignatureHeader = "X-Switchboard-Signature"

// NodeHeader names the node that sent a webhook request (not necessarily
// the node that saw the events: see the events' node field).
const NodeHeader = "X-Switchboard-Node"

// signaturePrefix starts the header's value; the hex digest follows.
const signaturePrefix = "sha256="

// ErrBadSignature is returned by Verify for a missing, malformed or wrong
// signature.
var ErrBadSignature = errors.New("webhook: bad signature")

// Sign returns the value of SignatureHeader for body: "sha256=" and the
// lower-case hex HMAC-SHA256 of the raw body under secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify checks header (the value of SignatureHeader) against the raw
// body, in constant time. It is what a receiver written in Go runs before
// trusting a request; docs/backend.md shows the same check in Node.
func Verify(secret, body []byte, header string) error {
	hexSum, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return ErrBadSignature
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}
