package protocol

// MaxIdempotencyKeyLength is the longest idempotency key accepted, in bytes.
const MaxIdempotencyKeyLength = 64

// ValidateIdempotencyKey reports whether key is a valid idempotency key: 1
// to MaxIdempotencyKeyLength bytes of printable ASCII (space to '~'). It
// returns ErrBadRequest with a specific message when it is not. The same
// rule holds for the publish command's "idempotency_key", the server API's
// and the HTTP publish endpoint's (body field or Idempotency-Key header).
func ValidateIdempotencyKey(key string) *Error {
	if key == "" || len(key) > MaxIdempotencyKeyLength {
		return ErrBadRequest.WithMessage("idempotency key must be 1 to %d bytes long, got %d", MaxIdempotencyKeyLength, len(key))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return ErrBadRequest.WithMessage("idempotency key must be printable ASCII (byte %d is 0x%02x)", i, key[i])
		}
	}
	return nil
}
