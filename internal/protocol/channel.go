package protocol

// MaxChannelLength is the longest channel name accepted, in bytes.
const MaxChannelLength = 255

// channelChars marks the bytes allowed in a channel name: ASCII letters and
// digits and the punctuation "_-.:@/=,#+!". Names never need escaping in JSON,
// URLs or Redis keys. ':' separates a namespace from the rest of the name and
// '#' introduces a user list; both are reserved for those meanings.
var channelChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "_-.:@/=,#+!" {
		t[c] = true
	}
	return t
}()

// ValidateChannel reports whether name is a valid channel name, returning
// ErrInvalidChannel with a specific message when it is not.
func ValidateChannel(name string) *Error {
	if name == "" {
		return ErrInvalidChannel.WithMessage(`missing "channel"`)
	}
	if len(name) > MaxChannelLength {
		return ErrInvalidChannel.WithMessage("channel name longer than %d bytes", MaxChannelLength)
	}
	for i := 0; i < len(name); i++ {
		if !channelChars[name[i]] {
			return ErrInvalidChannel.WithMessage("channel name may contain only letters, digits and _-.:@/=,#+! (byte %d)", i)
		}
	}
	return nil
}
