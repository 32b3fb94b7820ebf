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

// MaxMethodLength is the longest rpc method name accepted, in bytes.
const MaxMethodLength = 128

// ValidateMethod reports whether name is a valid rpc method name: 1 to
// MaxMethodLength bytes of ASCII letters, digits and "_-.:/". As with
// channels, the part before the first ':' names a namespace, whose
// proxy_rpc_endpoint handles the method.
func ValidateMethod(name string) *Error {
	if name == "" {
		return ErrBadRequest.WithMessage(`missing "method"`)
	}
	if len(name) > MaxMethodLength {
		return ErrBadRequest.WithMessage("method name longer than %d bytes", MaxMethodLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':' || c == '/') {
			return ErrBadRequest.WithMessage("method name may contain only letters, digits and _-.:/ (byte %d)", i)
		}
	}
	return nil
}
