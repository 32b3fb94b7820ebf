package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST convention fixes HMAC-SHA1
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxUserLen is the longest user ID a credential may carry, in bytes. With
// the expiry and the colon the username stays well under STUN's limit of
// 513 bytes.
const MaxUserLen = 256

// Errors of ParseUsername and Mint.
var (
	// ErrBadUsername: the username is not "expiry:user" with a decimal
	// Unix time and a non-empty, printable user ID.
	ErrBadUsername = errors.New("turn: username is not expiry:user")
	// ErrBadUser: a user ID that Mint cannot put in a username (empty,
	// longer than MaxUserLen, not UTF-8 or with control characters).
	ErrBadUser = errors.New("turn: invalid user ID")
)

// Credential is a time-limited TURN credential in the TURN REST convention
// (draft-uberti-behave-turn-rest): Username is "expiry:user" with expiry in
// Unix seconds, Password is base64(HMAC-SHA1(secret, Username)). Any node
// that knows the secret can check it without shared state.
type Credential struct {
	Username string
	Password string
	// Expires is when the credential stops being accepted (whole seconds).
	Expires time.Time
}

// MintCredential makes the credential of user valid until expires, signed
// with secret. Most code calls (*Server).Mint instead.
func MintCredential(secret []byte, user string, expires time.Time) (Credential, error) {
	if err := checkUser(user); err != nil {
		return Credential{}, err
	}
	exp := expires.Unix()
	if exp < 0 {
		exp = 0
	}
	username := strconv.FormatInt(exp, 10) + ":" + user
	return Credential{Username: username, Password: password(secret, username), Expires: time.Unix(exp, 0)}, nil
}

// password is the REST password of username: base64(HMAC-SHA1(secret,
// username)).
func password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ParseUsername splits a REST username "expiry:user" into its expiry and
// user ID. The user ID is everything after the first colon and may itself
// contain colons.
func ParseUsername(username string) (expires time.Time, user string, err error) {
	exp, user, ok := strings.Cut(username, ":")
	if !ok || exp == "" || len(exp) > 19 {
		return time.Time{}, "", ErrBadUsername
	}
	for i := 0; i < len(exp); i++ {
		if exp[i] < '0' || exp[i] > '9' {
			return time.Time{}, "", ErrBadUsername
		}
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %w", ErrBadUsername, err)
	}
	if checkUser(user) != nil {
		return time.Time{}, "", ErrBadUsername
	}
	return time.Unix(sec, 0), user, nil
}

// checkUser reports whether user can be carried in a username.
func checkUser(user string) error {
	if user == "" || len(user) > MaxUserLen || !utf8.ValidString(user) {
		return ErrBadUser
	}
	for _, r := range user {
		if unicode.IsControl(r) {
			return ErrBadUser
		}
	}
	return nil
}
