// Package auth verifies client credentials: JWT connection tokens and
// subscription tokens, with the signing algorithm pinned by configuration,
// keys from a shared secret, a public key file or a JWKS endpoint.
package auth

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors a verification may fail with; callers map them to protocol codes.
var (
	// ErrTokenTooLarge: the token is over the configured size cap; it was
	// refused before parsing.
	ErrTokenTooLarge = errors.New("auth: token too large")
	// ErrTokenExpired: the token's exp has passed.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrTokenInvalid: malformed, badly signed, wrong algorithm, issuer or
	// audience, or of the wrong kind.
	ErrTokenInvalid = errors.New("auth: invalid token")
	// ErrNotConfigured: tokens are not enabled on this server.
	ErrNotConfigured = errors.New("auth: tokens are not configured")
)

// Config configures token verification. Exactly one key source is used:
// Secret (HS256), PublicKeyFile (RS256 or ES256) or JWKSURL.
type Config struct {
	// Algorithm pins the signing algorithm: HS256, RS256 or ES256. Tokens
	// signed otherwise (including "none") are refused. Default: HS256 with a
	// secret, else required.
	Algorithm string
	// Secret is the HS256 shared secret.
	Secret string
	// PublicKeyFile is a PEM file with the RSA or EC public key.
	PublicKeyFile string
	// JWKSURL is fetched for keys by "kid"; see JWKS.
	JWKSURL string
	// JWKSRefresh is how long fetched keys are cached. Default 5 minutes.
	JWKSRefresh time.Duration
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// MaxSize caps a token's length in bytes. Default 8192.
	MaxSize int
	// Leeway tolerates clock skew on exp, nbf and iat. Default 0.
	Leeway time.Duration
	// Now returns the time; tests replace it. Default time.Now.
	Now func() time.Time
}

// Enabled reports whether any key source is configured.
func (c Config) Enabled() bool {
	return c.Secret != "" || c.PublicKeyFile != "" || c.JWKSURL != ""
}

// ConnectClaims are the claims of a connection token.
type ConnectClaims struct {
	jwt.RegisteredClaims
	// Info is attached to the client and shown in presence.
	Info json.RawMessage `json:"info,omitempty"`
	// Channels are subscribed by the server when the client connects.
	Channels []string `json:"channels,omitempty"`
	// Grants are permissions for calls: "room:join", "room:publish"
	// (every room), "room:join:NAME", "room:publish:NAME" (one room) or
	// "room:*" (both, every room).
	Grants []string `json:"grants,omitempty"`
	// Channel must be absent: its presence marks a subscription token.
	Channel string `json:"channel,omitempty"`
}

// SubscribeClaims are the claims of a subscription token: it lets user Sub
// subscribe to Channel.
type SubscribeClaims struct {
	jwt.RegisteredClaims
	Channel string          `json:"channel"`
	Info    json.RawMessage `json:"info,omitempty"`
}

// Verifier checks tokens. Create it with NewVerifier; it is safe for
// concurrent use.
type Verifier struct {
	cfg     Config
	parser  *jwt.Parser
	keyFunc jwt.Keyfunc
	jwks    *JWKS
}

// NewVerifier checks cfg and loads the key. It returns (nil, nil) when no key
// source is configured.
func NewVerifier(cfg Config) (*Verifier, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	sources := 0
	for _, s := range []string{cfg.Secret, cfg.PublicKeyFile, cfg.JWKSURL} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		return nil, errors.New("auth: configure one of jwt_secret, jwt_public_key, jwt_jwks_url")
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 8192
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Algorithm == "" && cfg.Secret != "" {
		cfg.Algorithm = "HS256"
	}
	v := &Verifier{cfg: cfg}
	switch cfg.Algorithm {
	case "HS256":
		if cfg.Secret == "" {
			return nil, errors.New("auth: HS256 needs jwt_secret")
		}
		if len(cfg.Secret) < 16 {
			return nil, errors.New("auth: jwt_secret must be at least 16 bytes")
		}
		key := []byte(cfg.Secret)
		v.keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	case "RS256", "ES256":
		switch {
		case cfg.PublicKeyFile != "":
			key, err := loadPublicKey(cfg.PublicKeyFile, cfg.Algorithm)
			if err != nil {
				return nil, err
			}
			v.keyFunc = func(*jwt.Token) (any, error) { return key, nil }
		case cfg.JWKSURL != "":
			v.jwks = NewJWKS(cfg.JWKSURL, cfg.JWKSRefresh)
			v.keyFunc = func(t *jwt.Token) (any, error) {
				kid, _ := t.Header["kid"].(string)
				return v.jwks.Key(kid, cfg.Algorithm)
			}
		default:
			return nil, fmt.Errorf("auth: %s needs jwt_public_key or jwt_jwks_url", cfg.Algorithm)
		}
	case "":
		return nil, errors.New("auth: jwt_algorithm is required with a public key or JWKS")
	default:
		return nil, fmt.Errorf("auth: jwt_algorithm %q is not one of HS256, RS256, ES256", cfg.Algorithm)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{cfg.Algorithm}),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func loadPublicKey(path, alg string) (crypto.PublicKey, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: public key: %w", err)
	}
	var key crypto.PublicKey
	if alg == "RS256" {
		key, err = jwt.ParseRSAPublicKeyFromPEM(pem)
	} else {
		key, err = jwt.ParseECPublicKeyFromPEM(pem)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: public key %s for %s: %w", path, alg, err)
	}
	return key, nil
}

// Connect verifies a connection token.
func (v *Verifier) Connect(token string) (*ConnectClaims, error) {
	var c ConnectClaims
	if err := v.parse(token, &c); err != nil {
		return nil, err
	}
	if c.Channel != "" {
		return nil, fmt.Errorf("%w: a subscription token is not a connection token", ErrTokenInvalid)
	}
	if len(c.Info) > 0 && !json.Valid(c.Info) {
		return nil, fmt.Errorf("%w: info is not JSON", ErrTokenInvalid)
	}
	return &c, nil
}

// Subscribe verifies a subscription token for channel, held by user.
func (v *Verifier) Subscribe(token, channel, user string) (*SubscribeClaims, error) {
	var c SubscribeClaims
	if err := v.parse(token, &c); err != nil {
		return nil, err
	}
	if c.Channel == "" {
		return nil, fmt.Errorf("%w: not a subscription token (no channel claim)", ErrTokenInvalid)
	}
	if c.Channel != channel {
		return nil, fmt.Errorf("%w: the token is for another channel", ErrTokenInvalid)
	}
	if c.Subject != user {
		return nil, fmt.Errorf("%w: the token is for another user", ErrTokenInvalid)
	}
	return &c, nil
}

func (v *Verifier) parse(token string, claims jwt.Claims) error {
	if v == nil {
		return ErrNotConfigured
	}
	if len(token) > v.cfg.MaxSize {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTokenTooLarge, len(token), v.cfg.MaxSize)
	}
	if strings.TrimSpace(token) == "" {
		return fmt.Errorf("%w: empty token", ErrTokenInvalid)
	}
	_, err := v.parser.ParseWithClaims(token, claims, v.keyFunc)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: %v", ErrTokenExpired, err)
	default:
		return fmt.Errorf("%w: %v", ErrTokenInvalid, err)
	}
}

// Expiry returns the token's expiry, or the zero time when it has none.
func Expiry(c jwt.RegisteredClaims) time.Time {
	if c.ExpiresAt == nil {
		return time.Time{}
	}
	return c.ExpiresAt.Time
}

// Sign mints an HS256 token with the given claims, for the token command
// and tests.
func Sign(secret string, claims jwt.Claims) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}
