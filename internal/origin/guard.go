package origin

import (
	"log/slog"
	"net/http"
	"sync"
)

// maxLogged bounds the distinct refused origins and hosts a Guard
// remembers, so that a client sending a new Origin or Host on every request
// cannot grow its memory or flood the log.
const maxLogged = 256

// maxLoggedLen truncates the refused values the Guard remembers and logs.
const maxLoggedLen = 200

// The answers to refused requests. The body is the project's JSON error
// object; its code is 403 (permission denied) in both cases, the HTTP
// status tells them apart.
const (
	hostRefused   = `{"error":{"code":403,"message":"host not allowed: this server does not answer to that name (see allowed_hosts)"}}` + "\n"
	originRefused = `{"error":{"code":403,"message":"origin not allowed (see allowed_origins)"}}` + "\n"
)

// Config configures a Guard.
type Config struct {
	// Origins lists the browser origins allowed besides the server's own
	// (allowed_origins; see Policy).
	Origins []string
	// Hosts lists the Host names allowed besides loopback names and IP
	// addresses (allowed_hosts; see ParseHosts).
	Hosts Hosts
	// Logger receives one warning per refused origin or host.
	// Default slog.Default().
	Logger *slog.Logger
}

// Guard checks the Host and Origin of requests for every endpoint a browser
// uses, answers those it refuses, and logs each distinct refused origin and
// host once (up to maxLogged of them), with the setting that would allow
// it. One Guard is shared by all of a server's endpoints, so a refusal is
// logged once whichever endpoint saw it. It is safe for concurrent use.
type Guard struct {
	policy Policy
	hosts  Hosts
	log    *slog.Logger

	mu   sync.Mutex          // guards seen and full
	seen map[string]struct{} // "o " + origin or "h " + host, logged already
	full bool                // seen reached maxLogged (and that was logged)
}

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Guard{
		policy: Policy{Origins: cfg.Origins},
		hosts:  cfg.Hosts,
		log:    cfg.Logger.With("component", "origin"),
		seen:   map[string]struct{}{},
	}
}

// AllowHost reports whether r's Host may be served. When it may not, it
// answers 421 Misdirected Request with a JSON error and returns false.
func (g *Guard) AllowHost(w http.ResponseWriter, r *http.Request) bool {
	if g.hosts.Allows(r.Host) {
		return true
	}
	g.refusedHost(r)
	refuse(w, http.StatusMisdirectedRequest, hostRefused)
	return false
}

// AllowOrigin reports whether r's Origin may use the server. When it may
// not, it answers 403 Forbidden with a JSON error and returns false.
func (g *Guard) AllowOrigin(w http.ResponseWriter, r *http.Request) bool {
	if g.policy.Allowed(r) {
		return true
	}
	g.refusedOrigin(r)
	refuse(w, http.StatusForbidden, originRefused)
	return false
}

// Check applies the Host check, then the Origin check: what a WebSocket
// upgrade needs. It returns false when it has answered the request.
func (g *Guard) Check(w http.ResponseWriter, r *http.Request) bool {
	return g.AllowHost(w, r) && g.AllowOrigin(w, r)
}

// CORS applies Check to a plain HTTP endpoint, then sets the CORS response
// headers for an allowed cross-origin request (with credentials, echoing
// the origin) and answers a preflight (OPTIONS) itself. methods is the
// Access-Control-Allow-Methods of the preflight answer. It returns false
// when the request has been answered and the handler must stop.
func (g *Guard) CORS(w http.ResponseWriter, r *http.Request, methods string) bool {
	if !g.Check(w, r) {
		return false
	}
	h := w.Header()
	if o := r.Header.Get("Origin"); o != "" {
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Last-Event-ID, Idempotency-Key")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// RequireHost wraps next so that it serves only requests whose Host is
// allowed: for the endpoints that take no part in CORS (the server API,
// the demo pages).
func (g *Guard) RequireHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.AllowHost(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

func refuse(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (g *Guard) refusedHost(r *http.Request) {
	host := truncate(r.Host)
	if !g.first("h " + host) {
		return
	}
	args := []any{"host", host, "path", r.URL.Path, "remote", r.RemoteAddr}
	if name := suggestHost(host); name != "" {
		args = append(args, "allow_with", "allowed_hosts: ["+name+"] in the configuration file, SWITCHBOARD_ALLOWED_HOSTS="+name+" or --allowed-hosts="+name)
	}
	g.log.Warn("refused a request for a host name this server does not answer to (DNS rebinding protection); logged once per host", args...)
}

func (g *Guard) refusedOrigin(r *http.Request) {
	o := truncate(r.Header.Get("Origin"))
	if !g.first("o " + o) {
		return
	}
	args := []any{"origin", o, "path", r.URL.Path, "remote", r.RemoteAddr}
	if wellFormed(o) {
		args = append(args, "allow_with", "allowed_origins: ["+o+"] in the configuration file, SWITCHBOARD_ALLOWED_ORIGINS="+o+" or --allowed-origins="+o)
	} else {
		args = append(args, "allow_with", "nothing: this is not an http(s) origin (a file:// page or a sandboxed frame sends \"null\"); serve the page over http or https")
	}
	g.log.Warn("refused a request from a browser origin that is not allowed; logged once per origin", args...)
}

// first reports whether key is refused for the first time, remembering it.
// Once maxLogged keys are remembered it logs that it stops, once, and
// reports false for every new key.
func (g *Guard) first(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.seen[key]; ok {
		return false
	}
	if len(g.seen) >= maxLogged {
		if !g.full {
			g.full = true
			g.log.Warn("more distinct origins and hosts refused than are logged; further ones are refused silently", "logged", maxLogged)
		}
		return false
	}
	g.seen[key] = struct{}{}
	return true
}

func truncate(s string) string {
	if len(s) > maxLoggedLen {
		return s[:maxLoggedLen] + "..."
	}
	return s
}
