package stream

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// Action is what a credential is checked for.
type Action string

// The two actions on a stream.
const (
	ActionPublish Action = "publish"
	ActionRead    Action = "read"
)

// Who may read a namespace's streams (Namespace.Read).
const (
	// ReadAnyone: no credential is needed to watch.
	ReadAnyone = "anyone"
	// ReadToken: watching needs the server API key, a read (or publish)
	// stream key for the path or a JWT granting "stream:read".
	ReadToken = "token"
)

// Namespace configures the streams "NAME/...". Set in the configuration
// file's stream_namespaces list.
type Namespace struct {
	// Name is the first path segment.
	Name string `koanf:"name" json:"name"`
	// Read is who may watch: ReadAnyone (default) or ReadToken.
	Read string `koanf:"read" json:"read"`
	// Record writes the namespace's streams to fMP4 files under the
	// server's stream_record_dir (package record).
	Record bool `koanf:"record" json:"record"`
}

// Validate checks the namespace.
func (n Namespace) Validate() error {
	if !validPart(n.Name) {
		return fmt.Errorf("stream namespace %q: want 1-%d of [A-Za-z0-9_.-], not starting with '.'", n.Name, maxPartLen)
	}
	switch n.Read {
	case "", ReadAnyone, ReadToken:
	default:
		return fmt.Errorf("stream namespace %q: read must be %q or %q, not %q", n.Name, ReadAnyone, ReadToken, n.Read)
	}
	return nil
}

// Stream keys are "sk1.<p|r>.<expiry, unix seconds, base 36>.<signature>",
// the signature being the first 16 bytes of HMAC-SHA256(secret, keyDomain
// NUL action NUL path NUL expiry), base64url without padding. The path is
// not in the key (it is where the key is used), so a key works for the
// one path it was minted for.
const (
	keyPrefix = "sk1."
	keyDomain = "switchboard stream key v1"
	sigLen    = 16
	// MaxKeyTTL is the longest lifetime a minted stream key may have.
	MaxKeyTTL = 366 * 24 * time.Hour
)

// AuthOptions configure an Authorizer.
type AuthOptions struct {
	// APIKeys are the server API keys: any of them may publish and read
	// every stream.
	APIKeys []string
	// KeySecret signs stream keys; at least 16 bytes. Every node that
	// accepts a key must share it. Empty: stream keys are refused and
	// MintKey fails.
	KeySecret []byte
	// Verifier checks JWTs; nil refuses them.
	Verifier *auth.Verifier
	// Namespaces set who may read; a namespace not listed is open to
	// readers.
	Namespaces []Namespace
	// Now returns the time for key expiry; tests replace it. Default
	// time.Now.
	Now func() time.Time
}

// Authorizer checks the credentials of publishers and readers. It is safe
// for concurrent use.
type Authorizer struct {
	opts  AuthOptions
	reads map[string]string
}

// NewAuthorizer checks opts and returns the authorizer.
func NewAuthorizer(opts AuthOptions) (*Authorizer, error) {
	if len(opts.KeySecret) > 0 && len(opts.KeySecret) < 16 {
		return nil, errors.New("stream: the stream key secret must be at least 16 bytes")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authorizer{opts: opts, reads: map[string]string{}}
	for _, ns := range opts.Namespaces {
		if err := ns.Validate(); err != nil {
			return nil, err
		}
		a.reads[ns.Name] = ns.Read
	}
	return a, nil
}

// Credentials are what a publisher or reader presented. Empty fields are
// absent.
type Credentials struct {
	APIKey    string
	StreamKey string
	Token     string
}

// Empty reports whether no credential was given.
func (c Credentials) Empty() bool { return c.APIKey == "" && c.StreamKey == "" && c.Token == "" }

// ParseCredential classifies one secret given where a single value fits
// (the RTMP URL's ?key=, a WHIP bearer token): "sk1." starts a stream key,
// three dot-separated parts are a JWT, anything else is an API key.
func ParseCredential(secret string) Credentials {
	switch {
	case secret == "":
		return Credentials{}
	case strings.HasPrefix(secret, keyPrefix):
		return Credentials{StreamKey: secret}
	case strings.Count(secret, ".") == 2:
		return Credentials{Token: secret}
	}
	return Credentials{APIKey: secret}
}

// CredentialsFromRequest reads an HTTP request's credential from the
// "Authorization" header ("Bearer X" as WHIP and WHEP send it, or
// "apikey X") or else from the "key" or "token" query parameter; X is
// classified by ParseCredential.
func CredentialsFromRequest(r *http.Request) Credentials {
	h := r.Header.Get("Authorization")
	for _, scheme := range []string{"bearer ", "apikey "} {
		if len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) {
			v := strings.TrimSpace(h[len(scheme):])
			if scheme == "apikey " {
				return Credentials{APIKey: v}
			}
			return ParseCredential(v)
		}
	}
	q := r.URL.Query()
	if v := q.Get("key"); v != "" {
		return ParseCredential(v)
	}
	return ParseCredential(q.Get("token"))
}

// Authorize checks c for action on path (a valid path: see SplitPath). A
// publisher needs a credential; a reader needs one only in a namespace
// whose Read is ReadToken. The error wraps ErrUnauthorized (none given),
// ErrKeyExpired or ErrForbidden (given but not valid for this), with the
// reason.
func (a *Authorizer) Authorize(action Action, path string, c Credentials) error {
	ns, _, err := SplitPath(path)
	if err != nil {
		return err
	}
	if action == ActionRead && a.reads[ns] != ReadToken {
		return nil
	}
	if c.Empty() {
		return fmt.Errorf("%w to %s %s: give the API key, a stream key or a token", ErrUnauthorized, action, path)
	}
	if c.APIKey != "" {
		ok := 0
		for _, k := range a.opts.APIKeys {
			ok |= subtle.ConstantTimeCompare([]byte(c.APIKey), []byte(k))
		}
		if ok == 1 {
			return nil
		}
		return fmt.Errorf("%w: invalid API key", ErrForbidden)
	}
	if c.StreamKey != "" {
		return a.checkKey(action, path, c.StreamKey)
	}
	claims, err := a.opts.Verifier.Connect(c.Token)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	if !granted(claims.Grants, action, path) {
		return fmt.Errorf(`%w: the token does not grant "stream:%s" for %s`, ErrForbidden, action, path)
	}
	return nil
}

// granted reports whether grants allow action on path: "stream:*",
// "stream:ACTION" or "stream:ACTION:PATH".
func granted(grants []string, action Action, path string) bool {
	for _, g := range grants {
		if g == "stream:*" || g == "stream:"+string(action) || g == "stream:"+string(action)+":"+path {
			return true
		}
	}
	return false
}

// MintKey returns a stream key for action on path that expires after ttl
// (1 second to MaxKeyTTL), and its expiry. A publish key also lets its
// holder read. It fails without a KeySecret.
func (a *Authorizer) MintKey(action Action, path string, ttl time.Duration) (string, time.Time, error) {
	if len(a.opts.KeySecret) == 0 {
		return "", time.Time{}, errors.New("stream: stream keys are not configured (no secret)")
	}
	if _, _, err := SplitPath(path); err != nil {
		return "", time.Time{}, err
	}
	if ttl < time.Second || ttl > MaxKeyTTL {
		return "", time.Time{}, fmt.Errorf("stream: key ttl %s is not within 1s and %s", ttl, MaxKeyTTL)
	}
	if action != ActionPublish && action != ActionRead {
		return "", time.Time{}, fmt.Errorf("stream: unknown action %q", action)
	}
	exp := a.opts.Now().Add(ttl).Truncate(time.Second)
	expStr := strconv.FormatInt(exp.Unix(), 36)
	act := string(action[:1])
	return keyPrefix + act + "." + expStr + "." + a.sign(act, path, expStr), exp, nil
}

func (a *Authorizer) sign(act, path, exp string) string {
	m := hmac.New(sha256.New, a.opts.KeySecret)
	m.Write([]byte(keyDomain + "\x00" + act + "\x00" + path + "\x00" + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:sigLen])
}

func (a *Authorizer) checkKey(action Action, path, key string) error {
	if len(a.opts.KeySecret) == 0 {
		return fmt.Errorf("%w: stream keys are not configured", ErrForbidden)
	}
	parts := strings.Split(strings.TrimPrefix(key, keyPrefix), ".")
	if len(parts) != 3 || (parts[0] != "p" && parts[0] != "r") || len(parts[2]) > 64 {
		return fmt.Errorf("%w: malformed stream key", ErrForbidden)
	}
	want := a.sign(parts[0], path, parts[1])
	if subtle.ConstantTimeCompare([]byte(parts[2]), []byte(want)) != 1 {
		return fmt.Errorf("%w: invalid stream key for %s", ErrForbidden, path)
	}
	if action == ActionPublish && parts[0] != "p" {
		return fmt.Errorf("%w: a read key cannot publish", ErrForbidden)
	}
	exp, err := strconv.ParseInt(parts[1], 36, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed stream key", ErrForbidden)
	}
	if !a.opts.Now().Before(time.Unix(exp, 0)) {
		return fmt.Errorf("%w (at %s)", ErrKeyExpired, time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
