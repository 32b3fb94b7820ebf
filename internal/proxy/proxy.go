// Package proxy calls the application's backend over HTTP for the proxy
// hooks (connect, refresh, subscribe, publish, rpc): JSON requests, one
// HTTP client with timeouts, a concurrency limit per hook, a bounded
// answer size, no redirects followed, and answers decoded into results or
// the client-visible errors of internal/protocol. It knows nothing of the
// engine: the hub declares the interface it calls and the server wires a
// *Client into it. docs/backend.md documents the hooks for application
// developers.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Failures of a call that are the backend's fault, not the client's: the
// client sees them as 503 (retry). Test them with errors.Is.
var (
	// ErrUnavailable: the backend could not be reached, or answered with
	// an HTTP status other than 200.
	ErrUnavailable = errors.New("proxy: backend unavailable")
	// ErrTimeout: the backend did not answer within the timeout.
	ErrTimeout = errors.New("proxy: backend timed out")
	// ErrBadAnswer: the backend answered something that is not a valid
	// answer: not JSON, the wrong content type, too large, a redirect, or
	// none of result, error and disconnect.
	ErrBadAnswer = errors.New("proxy: invalid answer from backend")
	// ErrBusy: the hook's concurrency limit stayed full for the whole
	// timeout.
	ErrBusy = errors.New("proxy: too many backend calls in flight")
)

// Results of a call, as the proxy_calls_total metric labels them.
const (
	ResultOK          = "ok"          // the backend allowed (or answered the RPC)
	ResultError       = "error"       // the backend refused with an error
	ResultDisconnect  = "disconnect"  // the backend asked to close the connection
	ResultTimeout     = "timeout"     // ErrTimeout
	ResultUnavailable = "unavailable" // ErrUnavailable
	ResultBadAnswer   = "bad_answer"  // ErrBadAnswer
	ResultBusy        = "busy"        // ErrBusy
	ResultCanceled    = "canceled"    // the client went away first
)

// Options configure a Client. Zero fields take the defaults documented on
// them.
type Options struct {
	// Timeout bounds each call, from waiting for a free slot to reading the
	// whole answer. Default 3s.
	Timeout time.Duration
	// MaxConcurrency bounds the calls in flight per hook; a call over it
	// waits for a slot within its Timeout, then fails with ErrBusy.
	// Default 256.
	MaxConcurrency int
	// MaxAnswerSize bounds an answer's body; a larger one is ErrBadAnswer.
	// Default 1 MiB.
	MaxAnswerSize int64
	// Metrics, when not nil, count calls and observe their duration.
	Metrics *metrics.Metrics
	// Logger receives a warning per failed call. Default slog.Default().
	Logger *slog.Logger
	// Transport carries the requests. Default: a transport of the
	// client's own that ignores the HTTP_PROXY environment variables.
	Transport http.RoundTripper
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 256
	}
	if o.MaxAnswerSize <= 0 {
		o.MaxAnswerSize = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Client calls a backend's hooks. It is safe for concurrent use; Close
// releases its idle connections.
type Client struct {
	opts  Options
	http  *http.Client
	own   *http.Transport // nil with Options.Transport
	slots map[string]chan struct{}
	log   *slog.Logger
}

// New returns a Client.
func New(opts Options) *Client {
	opts.setDefaults()
	c := &Client{opts: opts, log: opts.Logger.With("component", "proxy"), slots: map[string]chan struct{}{}}
	rt := opts.Transport
	if rt == nil {
		c.own = &http.Transport{
			// No Proxy: HTTP_PROXY must not reroute calls that carry
			// the clients' cookies. Each call's context bounds dialing
			// and waiting; these bound what a context does not cover.
			DialContext:         (&net.Dialer{Timeout: opts.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        opts.MaxConcurrency,
			MaxIdleConnsPerHost: opts.MaxConcurrency,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: opts.Timeout,
			ForceAttemptHTTP2:   true,
		}
		rt = c.own
	}
	c.http = &http.Client{
		Transport: rt,
		// A redirect is not followed: the backend's URL is configured, and
		// following one would send the client's cookies elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, h := range Hooks {
		c.slots[h] = make(chan struct{}, opts.MaxConcurrency)
	}
	return c
}

// Close closes the client's idle connections. Calls may still be made
// (they open new ones).
func (c *Client) Close() {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
}

// Connect calls the connect hook at endpoint; headers are sent as HTTP
// headers too, so that the backend's own session middleware sees the
// client's cookies.
func (c *Client) Connect(ctx context.Context, endpoint string, req ConnectRequest) (ConnectResult, error) {
	return call[ConnectResult](ctx, c, HookConnect, endpoint, req.Headers, req)
}

// Refresh calls the refresh hook at endpoint.
func (c *Client) Refresh(ctx context.Context, endpoint string, req RefreshRequest) (RefreshResult, error) {
	return call[RefreshResult](ctx, c, HookRefresh, endpoint, nil, req)
}

// Subscribe calls the subscribe hook at endpoint.
func (c *Client) Subscribe(ctx context.Context, endpoint string, req SubscribeRequest) (SubscribeResult, error) {
	return call[SubscribeResult](ctx, c, HookSubscribe, endpoint, nil, req)
}

// Publish calls the publish hook at endpoint.
func (c *Client) Publish(ctx context.Context, endpoint string, req PublishRequest) (PublishResult, error) {
	return call[PublishResult](ctx, c, HookPublish, endpoint, nil, req)
}

// RPC calls the rpc hook at endpoint.
func (c *Client) RPC(ctx context.Context, endpoint string, req RPCRequest) (RPCResult, error) {
	return call[RPCResult](ctx, c, HookRPC, endpoint, nil, req)
}

// call makes one hook call and decodes its answer. The error is a
// *protocol.Error (the backend refused), a protocol.Disconnect (the
// backend closes the connection) or one of the Err* failures, wrapped.
func call[R any](ctx context.Context, c *Client, hook, endpoint string, headers map[string]string, body any) (R, error) {
	var zero R
	start := time.Now()
	raw, err := c.post(ctx, hook, endpoint, headers, body)
	var res R
	if err == nil {
		res, err = decode[R](raw)
	}
	c.observe(hook, start, err)
	if err != nil {
		return zero, err
	}
	return res, nil
}

// post sends body to endpoint and returns the answer's body.
func (c *Client) post(ctx context.Context, hook, endpoint string, headers map[string]string, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	slots := c.slots[hook]
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s hook: %d calls in flight for %s", ErrBusy, hook, cap(slots), c.opts.Timeout)
		}
		return nil, fmt.Errorf("%s hook: %w", hook, ctx.Err())
	}
	defer func() { <-slots }()
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("%s hook: encode request: %w", hook, err) // a bug: the types are plain
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %s hook: %w", ErrUnavailable, hook, err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "switchboard")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s hook: no answer within %s", ErrTimeout, hook, c.opts.Timeout)
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%s hook: %w", hook, context.Canceled)
		}
		return nil, fmt.Errorf("%w: %s hook: %w", ErrUnavailable, hook, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		drain(resp.Body)
		return nil, fmt.Errorf("%w: %s hook: HTTP %d redirect to %q not followed", ErrBadAnswer, hook, resp.StatusCode, resp.Header.Get("Location"))
	case resp.StatusCode != http.StatusOK:
		drain(resp.Body)
		return nil, fmt.Errorf("%w: %s hook: HTTP %d", ErrUnavailable, hook, resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		drain(resp.Body)
		return nil, fmt.Errorf("%w: %s hook: content type %q, want application/json", ErrBadAnswer, hook, resp.Header.Get("Content-Type"))
	}
	if resp.ContentLength > c.opts.MaxAnswerSize {
		return nil, fmt.Errorf("%w: %s hook: answer of %d bytes, over %d", ErrBadAnswer, hook, resp.ContentLength, c.opts.MaxAnswerSize)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxAnswerSize+1))
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("%w: %s hook: answer not read within %s", ErrTimeout, hook, c.opts.Timeout)
	case err != nil:
		return nil, fmt.Errorf("%w: %s hook: read answer: %w", ErrUnavailable, hook, err)
	case int64(len(raw)) > c.opts.MaxAnswerSize:
		return nil, fmt.Errorf("%w: %s hook: answer over %d bytes", ErrBadAnswer, hook, c.opts.MaxAnswerSize)
	}
	return raw, nil
}

// drain reads a little of an unwanted body so that its connection can be
// reused; the rest is dropped with the connection.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 4<<10)) }

// decode reads an answer envelope: exactly one of result, error and
// disconnect.
func decode[R any](raw []byte) (R, error) {
	var zero R
	var a answer[R]
	if err := json.Unmarshal(raw, &a); err != nil {
		return zero, fmt.Errorf("%w: %s", ErrBadAnswer, protocol.JSONProblem(err))
	}
	n := 0
	for _, set := range []bool{a.Result != nil, a.Error != nil, a.Disconnect != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return zero, fmt.Errorf(`%w: the answer must hold exactly one of "result", "error" and "disconnect"`, ErrBadAnswer)
	}
	switch {
	case a.Error != nil:
		return zero, BackendError(a.Error.Code, a.Error.Message)
	case a.Disconnect != nil:
		return zero, BackendDisconnect(a.Disconnect.Code, a.Disconnect.Reason)
	}
	return *a.Result, nil
}

// observe counts a call and its duration.
func (c *Client) observe(hook string, start time.Time, err error) {
	result := Result(err)
	switch result {
	case ResultOK, ResultError, ResultDisconnect, ResultCanceled:
	default:
		c.log.Warn("backend call failed", "hook", hook, "err", err)
	}
	if m := c.opts.Metrics; m != nil {
		m.ProxyCalls.WithLabelValues(hook, result).Inc()
		m.ProxyDuration.WithLabelValues(hook).Observe(time.Since(start).Seconds())
	}
}

// Result classifies the outcome of a call for the metrics (one of the
// Result constants).
func Result(err error) string {
	var perr *protocol.Error
	var d protocol.Disconnect
	switch {
	case err == nil:
		return ResultOK
	case errors.As(err, &perr):
		return ResultError
	case errors.As(err, &d):
		return ResultDisconnect
	case errors.Is(err, ErrTimeout):
		return ResultTimeout
	case errors.Is(err, ErrBadAnswer):
		return ResultBadAnswer
	case errors.Is(err, ErrBusy):
		return ResultBusy
	case errors.Is(err, context.Canceled):
		return ResultCanceled
	default:
		return ResultUnavailable
	}
}

// PublicError is what the client is told of a failed call: the backend's
// own error as BackendError mapped it, or 503 with a message saying which
// failure it was (the details, such as the backend's address, stay in the
// server's log). It returns nil for a Disconnect, which the caller
// handles by closing the connection.
func PublicError(err error) *protocol.Error {
	var perr *protocol.Error
	var d protocol.Disconnect
	switch {
	case err == nil, errors.As(err, &d):
		return nil
	case errors.As(err, &perr):
		return perr
	case errors.Is(err, ErrTimeout):
		return protocol.ErrUnavailable.WithMessage("the application backend did not answer in time, retry")
	case errors.Is(err, ErrBusy):
		return protocol.ErrUnavailable.WithMessage("the application backend is busy, retry")
	case errors.Is(err, ErrBadAnswer):
		return protocol.ErrUnavailable.WithMessage("the application backend answered invalidly, retry")
	default:
		return protocol.ErrUnavailable.WithMessage("the application backend is unavailable, retry")
	}
}

// MaxMessageLen and MaxReasonLen bound the text a backend may send to a
// client: an error message, a close reason (a WebSocket close frame holds
// at most 123 bytes of reason).
const (
	MaxMessageLen = 256
	MaxReasonLen  = 123
)

// BackendError maps an error a backend answered to what the client gets.
// Codes a client can act on pass through: 400, 401, 403, 413, 429, 503
// and the application range 3000-3999. Any other code becomes 403
// (permission denied), its message kept. Messages are cut to
// MaxMessageLen bytes of valid UTF-8.
func BackendError(code int, message string) *protocol.Error {
	message = clip(message, MaxMessageLen)
	switch {
	case code == 400, code == 401, code == 403, code == 413, code == 429, code == 503, code >= 3000 && code <= 3999:
	default:
		code = protocol.ErrPermissionDenied.Code
	}
	if message == "" {
		message = "refused by the application backend"
	}
	return &protocol.Error{Code: code, Message: message}
}

// BackendDisconnect maps a disconnect a backend answered: codes
// 4000-4999 pass through (4000-4499 ask the client to reconnect,
// 4500-4999 not to); any other becomes 4500. The reason is cut to
// MaxReasonLen bytes.
func BackendDisconnect(code int, reason string) protocol.Disconnect {
	if code < 4000 || code > 4999 {
		code = int(protocol.DisconnectForce.Code)
	}
	reason = clip(reason, MaxReasonLen)
	if reason == "" {
		reason = "disconnected by the application backend"
	}
	return protocol.Disconnect{Code: uint16(code), Reason: reason}
}

// clip cuts s to at most n bytes of valid UTF-8 without control
// characters.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// PickHeaders returns the headers of h named in allow, by canonical name,
// several values of one joined with ", " ("; " for Cookie); nil when none
// is present.
func PickHeaders(h http.Header, allow []string) map[string]string {
	var out map[string]string
	for _, name := range allow {
		name = http.CanonicalHeaderKey(name)
		vs := h.Values(name)
		if len(vs) == 0 {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(allow))
		}
		sep := ", "
		if name == "Cookie" {
			sep = "; "
		}
		out[name] = strings.Join(vs, sep)
	}
	return out
}

// CheckPassHeader reports why a header may not be passed to the backend:
// those that describe the request to the backend itself (Host, Content-Type,
// Content-Length, Transfer-Encoding, Connection and other hop-by-hop
// headers) are set by the client of this package.
func CheckPassHeader(name string) error {
	switch http.CanonicalHeaderKey(strings.TrimSpace(name)) {
	case "", "Host", "Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Connection",
		"Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Accept", "Accept-Encoding", "Expect":
		return fmt.Errorf("proxy: header %q cannot be passed to the backend", name)
	}
	return nil
}

// CheckEndpoint reports whether u is an endpoint a hook can call: an
// absolute http:// or https:// URL.
func CheckEndpoint(u string) error {
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("proxy: endpoint %q: %w", u, err)
	}
	if (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return fmt.Errorf("proxy: endpoint %q: must be an http:// or https:// URL", u)
	}
	return nil
}
