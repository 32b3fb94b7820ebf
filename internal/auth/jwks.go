package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// JWKS fetches public keys from a JSON Web Key Set URL and caches them.
// An unknown "kid" triggers a refetch, at most once per minRefetch, so a key
// rotation is picked up without waiting for the cache to expire, and a flood
// of tokens with made-up kids cannot make the server hammer the endpoint.
type JWKS struct {
	url     string
	ttl     time.Duration
	client  *http.Client
	mu      sync.Mutex
	keys    map[string]jwk
	fetched time.Time
}

// minRefetch is the shortest time between two fetches.
const minRefetch = 10 * time.Second

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	key crypto.PublicKey
}

// NewJWKS returns a key set fetched from url and cached for ttl (default 5
// minutes).
func NewJWKS(url string, ttl time.Duration) *JWKS {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	return &JWKS{url: url, ttl: ttl, client: &http.Client{Timeout: 10 * time.Second}}
}

// Key returns the public key with the given kid usable with alg.
func (j *JWKS) Key(kid, alg string) (crypto.PublicKey, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	stale := time.Since(j.fetched) > j.ttl
	k, ok := j.keys[kid]
	if stale || !ok && time.Since(j.fetched) > minRefetch {
		if err := j.fetchLocked(); err != nil && j.keys == nil {
			return nil, err
		}
		k, ok = j.keys[kid]
	}
	if !ok {
		return nil, fmt.Errorf("%w: no key %q in the JWKS", ErrTokenInvalid, kid)
	}
	if k.Alg != "" && k.Alg != alg {
		return nil, fmt.Errorf("%w: key %q is for %s", ErrTokenInvalid, kid, k.Alg)
	}
	switch alg {
	case "RS256":
		if _, ok := k.key.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("%w: key %q is not an RSA key", ErrTokenInvalid, kid)
		}
	case "ES256":
		if _, ok := k.key.(*ecdsa.PublicKey); !ok {
			return nil, fmt.Errorf("%w: key %q is not an EC key", ErrTokenInvalid, kid)
		}
	}
	return k.key, nil
}

func (j *JWKS) fetchLocked() error {
	j.fetched = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return fmt.Errorf("auth: jwks: %w", err)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("auth: jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: jwks: %s answered %s", j.url, resp.Status)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("auth: jwks: %w", err)
	}
	keys := make(map[string]jwk, len(set.Keys))
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			continue // skip keys we cannot use rather than fail the set
		}
		k.key = pub
		keys[k.Kid] = k
	}
	j.keys = keys
	return nil
}

func (k jwk) publicKey() (crypto.PublicKey, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "RSA":
		n, err1 := dec(k.N)
		e, err2 := dec(k.E)
		if err1 != nil || err2 != nil || len(e) > 4 {
			return nil, errors.New("bad RSA key")
		}
		exp := 0
		for _, b := range e {
			exp = exp<<8 | int(b)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, errors.New("unsupported curve")
		}
		x, err1 := dec(k.X)
		y, err2 := dec(k.Y)
		if err1 != nil || err2 != nil {
			return nil, errors.New("bad EC key")
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			return nil, errors.New("EC point not on curve")
		}
		return pub, nil
	default:
		return nil, errors.New("unsupported key type")
	}
}
