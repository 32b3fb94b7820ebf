// Package server is Switchboard's composition root: it builds the broker, the
// hub, the transports, the server API, the operations endpoints and the demo
// pages from a Config, serves them on one HTTP listener and shuts them down
// in order.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboardhq/switchboard/internal/api"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/memrelease"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/proxy"
	"github.com/switchboardhq/switchboard/internal/realip"
	"github.com/switchboardhq/switchboard/internal/transport/httppublish"
	"github.com/switchboardhq/switchboard/internal/transport/httpread"
	"github.com/switchboardhq/switchboard/internal/transport/longpoll"
	"github.com/switchboardhq/switchboard/internal/transport/sse"
	"github.com/switchboardhq/switchboard/internal/transport/websocket"
	"github.com/switchboardhq/switchboard/internal/turn"
	"github.com/switchboardhq/switchboard/internal/webhook"
	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
	"github.com/switchboardhq/switchboard/web"
)

// Server is one Switchboard node.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	hub     *hub.Hub
	broker  broker.Broker
	ws      *websocket.Handler
	sse     *sse.Handler
	calls   *calls // nil when webrtc is off
	httpSrv *http.Server
	proxy   *proxy.Client       // nil when no proxy hook is configured
	hooks   *webhook.Dispatcher // nil when webhook_endpoint is not set
	ln      net.Listener
	metrics *metrics.Metrics
	// api serves /api/; its streams are closed at shutdown.
	api *api.API
	// releases counts the free heap returned to the system (memrelease).
	releases atomic.Int64
	// turn is the STUN/TURN server, started by Listen when turn_addr is
	// set; nil otherwise.
	turn *turn.Server
	// streams is the live streaming; nil when streams is off.
	streams *streams
	// consumers are the outbox and Kafka consumers, set by Run.
	consumers *consumers
	// APIKeys are the keys the server API accepts (generated when none is
	// configured).
	APIKeys []string
	// GeneratedKey is true when APIKeys[0] was generated at startup.
	GeneratedKey bool
}

// New builds a node from cfg. Version is reported by the API.
func New(cfg config.Config, log *slog.Logger, version string) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, APIKeys: cfg.APIKey}
	if len(s.APIKeys) == 0 {
		var b [16]byte
		_, _ = rand.Read(b[:])
		s.APIKeys = []string{hex.EncodeToString(b[:])}
		s.GeneratedKey = true
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	s.metrics = m
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "switchboard", Name: "memory_releases_total",
		Help: "Times a quiet node returned the free heap a burst left to the system (memory_release_interval).",
	}, func() float64 { return float64(s.releases.Load()) }))

	b, p, err := newBroker(cfg, log)
	if err != nil {
		return nil, err
	}
	s.broker = b
	verifier, err := auth.NewVerifier(auth.Config{
		Algorithm:     cfg.JWTAlgorithm,
		Secret:        cfg.JWTSecret,
		PublicKeyFile: cfg.JWTPublicKey,
		JWKSURL:       cfg.JWTJWKSURL,
		Issuer:        cfg.JWTIssuer,
		Audience:      cfg.JWTAudience,
		MaxSize:       cfg.JWTMaxSize,
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if !cfg.AllowAnonymous && verifier == nil && cfg.ProxyConnectEndpoint == "" {
		return nil, errors.New("server: allow_anonymous is false but no token key (jwt_secret, jwt_public_key or jwt_jwks_url) nor proxy_connect_endpoint is configured")
	}
	if cfg.Streams {
		if s.streams, err = newStreams(cfg, s.APIKeys, verifier, log, reg); err != nil {
			return nil, err
		}
	}
	namespaces, useBackend := resolveProxy(cfg)
	rules, err := auth.NewRules(auth.Namespace{
		Subscribe:      auth.SubscribeAnyone,
		Publish:        cfg.ClientPublish,
		HistorySize:    cfg.HistorySize,
		HistoryTTL:     cfg.HistoryTTL,
		Recovery:       cfg.HistorySize > 0,
		Presence:       cfg.Presence,
		JoinLeave:      cfg.JoinLeave,
		ProxySubscribe: cfg.ProxySubscribeEndpoint,
		ProxyPublish:   cfg.ProxyPublishEndpoint,
		ProxyRPC:       cfg.ProxyRPCEndpoint,
	}, namespaces)
	if err != nil {
		return nil, fmt.Errorf("server: namespaces: %w", err)
	}
	var rooms hub.Rooms
	if cfg.WebRTC {
		var owners broker.PresenceStore
		if cfg.Broker != "memory" {
			owners = p
		}
		if s.calls, err = newCalls(cfg, owners, log); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				_ = s.calls.close(context.Background())
			}
		}()
		rooms = s.calls.signal
		calls := s.calls.sfu
		reg.MustRegister(metrics.NewCallCollector(func() metrics.CallStats {
			st := calls.Stats()
			return metrics.CallStats{Rooms: st.Rooms, Participants: st.Participants, Tracks: st.Tracks, Subscriptions: st.Subscriptions,
				ForwardedPackets: st.ForwardedPackets, KeyframeRequests: st.KeyframeRequests, LayerSwitches: st.LayerSwitches}
		}))
	}
	var callSFU *sfu.SFU
	if s.calls != nil {
		callSFU = s.calls.sfu
	}
	s.streams.useCalls(callSFU, reg)
	var backend hub.Backend
	if useBackend {
		s.proxy = proxy.New(proxy.Options{
			Timeout:        cfg.ProxyTimeout,
			MaxConcurrency: cfg.ProxyMaxConcurrency,
			Metrics:        m,
			Logger:         log,
		})
		backend = s.proxy
	}
	nodeName := cfg.NodeName
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}
	nodeID := newNodeID()
	var lifecycle hub.Lifecycle
	rejoin := func(ctx context.Context) { s.hub.ReportSubscriptions(ctx) } // set below, before Start
	if s.hooks, err = newWebhooks(cfg, b, nodeID, rejoin, m, log); err != nil {
		return nil, err
	} else if s.hooks != nil {
		lifecycle = s.hooks
	}
	s.hub = hub.New(hub.Config{
		NodeID:                   nodeID,
		Lifecycle:                lifecycle,
		NodeName:                 nodeName,
		NodeAddress:              cfg.Addr,
		Rules:                    rules,
		Verifier:                 verifier,
		RequireAuth:              !cfg.AllowAnonymous,
		Backend:                  backend,
		ProxyConnectEndpoint:     cfg.ProxyConnectEndpoint,
		ProxyRefreshEndpoint:     cfg.ProxyRefreshEndpoint,
		PassHeaders:              cfg.ProxyPassHeaders,
		ConnectTimeout:           cfg.HandshakeTimeout,
		CommandRate:              cfg.CommandRate,
		CommandTimeout:           cfg.CommandTimeout,
		CommandBurst:             cfg.CommandBurst,
		MaxConnections:           cfg.MaxConnections,
		MaxConnectionsPerIP:      cfg.MaxConnectionsPerIP,
		Version:                  version,
		QueueMaxMessages:         cfg.QueueMaxMessages,
		QueueMaxBytes:            cfg.QueueMaxBytes,
		WriteDelay:               cfg.WriteDelay,
		WriteDelayMinRate:        cfg.WriteDelayMinRate,
		MaxChannelsPerConnection: cfg.MaxChannelsPerConnection,
		ClientPublish:            cfg.ClientPublish,
		HistorySize:              cfg.HistorySize,
		HistoryTTL:               cfg.HistoryTTL,
		HistoryMaxLimit:          cfg.HistoryMaxLimit,
		IdempotencyWindow:        cfg.IdempotencyWindow,
		Presence:                 cfg.Presence,
		JoinLeave:                cfg.JoinLeave,
		PresenceTTL:              cfg.PresenceTTL,
		Logger:                   log,
		Metrics:                  m,
		Rooms:                    rooms,
	}, b, p)
	if s.calls != nil {
		s.calls.signal.SetNode(s.hub.NodeID())
	}
	hosts, err := origin.ParseHosts(cfg.AllowedHosts)
	if err != nil {
		return nil, fmt.Errorf("server: allowed_hosts: %w", err)
	}
	if hosts.Empty() && !origin.IsLoopbackAddr(cfg.Addr) {
		// Not refused: a container listens on 0.0.0.0 and is still reached
		// as localhost, and every IP address is allowed. Only names are
		// refused, each logged with the setting that would allow it.
		log.Warn("addr is not a loopback address but allowed_hosts is empty: requests that name this server by a host name other than localhost (for example Host: realtime.example.com) are refused with 421; list the names clients use in allowed_hosts (SWITCHBOARD_ALLOWED_HOSTS, --allowed-hosts)", "addr", cfg.Addr)
	}
	guard := origin.New(origin.Config{Origins: cfg.AllowedOrigins, Hosts: hosts, Logger: log})
	if err := websocket.CheckReader(cfg.WebSocketReader); err != nil {
		return nil, fmt.Errorf("server: websocket_reader: %w", err)
	}
	s.ws = websocket.NewHandler(s.hub, websocket.Options{
		Reader:             cfg.WebSocketReader,
		Compression:        cfg.WebSocketCompression,
		Metrics:            m,
		CompressionMinSize: cfg.CompressionMinSize,
		CompressionLevel:   cfg.CompressionLevel,
		MaxMessageSize:     cfg.MaxMessageSize,
		PingInterval:       cfg.PingInterval,
		IdleTimeout:        cfg.IdleTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		Guard:              guard,
		Logger:             log,
	})
	s.sse = sse.NewHandler(s.hub, sse.Options{
		PingInterval: cfg.PingInterval,
		WriteTimeout: cfg.WriteTimeout,
		MaxChannels:  min(cfg.MaxChannelsPerConnection, protocol.MaxCursorChannels),
		Guard:        guard,
		Logger:       log,
	})

	mux := http.NewServeMux()
	mux.Handle("/ws", s.ws)
	mux.Handle("/sse", s.sse)
	mux.Handle("/poll", longpoll.NewHandler(s.hub, longpoll.Options{
		MaxTimeout:   cfg.PollMaxTimeout,
		MaxChannels:  min(cfg.MaxChannelsPerConnection, protocol.MaxCursorChannels),
		WriteTimeout: cfg.WriteTimeout,
		Guard:        guard,
		Logger:       log,
	}))
	mux.Handle("/publish", httppublish.NewHandler(s.hub, httppublish.Options{
		MaxMessageSize: cfg.MaxMessageSize,
		Guard:          guard,
		Logger:         log,
	}))
	for path, op := range map[string]httpread.Op{"/history": httpread.History, "/presence": httpread.Presence, "/presence_stats": httpread.PresenceStats} {
		mux.Handle(path, httpread.NewHandler(s.hub, op, httpread.Options{Guard: guard, Logger: log}))
	}
	// The server API, the profiles and the demo pages check the Host too
	// (the transports do it themselves). The operations endpoints do not:
	// probes and scrapers often address a node by a name nobody lists, and
	// they reveal only aggregate counts (see "Securing Switchboard" in the
	// README).
	s.api = api.New(s.hub, api.Options{Keys: s.APIKeys, Logger: log, Metrics: m, Rooms: s.roomsAPI(), SelfTest: s.selfTestAPI(), Streams: s.streamsAPI()})
	mux.Handle("/api/", guard.RequireHost(s.api))
	s.streams.mount(mux, guard.RequireHost)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		// Profiles reveal internals: the server API key guards them.
		mux.Handle("/debug/pprof/", guard.RequireHost(api.RequireKey(s.APIKeys, http.HandlerFunc(pprof.Index))))
		mux.Handle("/debug/pprof/profile", guard.RequireHost(api.RequireKey(s.APIKeys, http.HandlerFunc(pprof.Profile))))
		mux.Handle("/debug/pprof/trace", guard.RequireHost(api.RequireKey(s.APIKeys, http.HandlerFunc(pprof.Trace))))
		mux.Handle("/debug/pprof/symbol", guard.RequireHost(api.RequireKey(s.APIKeys, http.HandlerFunc(pprof.Symbol))))
	}
	for _, name := range []string{"switchboard.js", "switchboard-worker.js"} {
		h, err := sdkHandler(name)
		if err != nil {
			return nil, err
		}
		mux.Handle("/sdk/"+name, guard.RequireHost(h))
	}
	if cfg.Demo {
		static, err := fs.Sub(web.Static, "static")
		if err != nil {
			return nil, fmt.Errorf("server: demo files: %w", err)
		}
		// Readable by anyone, but refused under a name that is not
		// allowed: the page would fail anyway when its script connects,
		// and the 421 says why at once.
		mux.Handle("/", guard.RequireHost(http.FileServerFS(static)))
	}
	// Behind trusted proxies every handler, the transports' connection
	// limits and logs included, sees the client's address as RemoteAddr.
	proxies, err := realip.ParseTrusted(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("server: trusted_proxies: %w", err)
	}
	s.httpSrv = &http.Server{
		Handler:           proxies.Handler(mux),
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		ReadTimeout:       cfg.HandshakeTimeout + cfg.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.TLSCert != "" {
		// Over TLS net/http also speaks HTTP/2, so browsers multiplex their
		// SSE streams on one connection instead of being held to six per
		// host. WebSocket upgrades stay on HTTP/1.1 (extended CONNECT is
		// off in net/http by default), which browsers handle by themselves.
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("server: tls_cert, tls_key: %w", err)
		}
		s.httpSrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else if cfg.HTTP2Cleartext {
		// HTTP/2 without TLS for clients that start with its preface (h2c
		// with prior knowledge; the HTTP/1.1 Upgrade to h2c is not
		// offered): backends multiplex their server API requests on one
		// connection. HTTP/1.1 requests and WebSocket upgrades are served
		// as before.
		p := new(http.Protocols)
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		s.httpSrv.Protocols = p
	}
	return s, nil
}

// selfTestAPI is the calls' self-test for the server API, nil when calls
// are off.
func (s *Server) selfTestAPI() func(context.Context) any {
	if s.calls == nil {
		return nil
	}
	return s.selfTest
}

// roomsAPI is the rooms of the cluster for the server API (the hub asks
// the call service of each node), nil when calls are off here.
func (s *Server) roomsAPI() api.Rooms {
	if s.calls == nil {
		return nil
	}
	return s.hub
}

// ready reports whether the node takes new clients: not shutting down, and
// its broker answers.
func (s *Server) ready(ctx context.Context) error {
	if s.hub.Draining() {
		return errors.New("shutting down")
	}
	if p, ok := s.broker.(pinger); ok {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	return nil
}

// Listen binds the configured address. Addr reports the bound address.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	s.ln = ln
	s.hub.SetNodeAddress(ln.Addr().String())
	if err := s.streams.listen(); err != nil {
		_ = ln.Close()
		return err
	}
	if s.cfg.TURNAddr != "" {
		if err := s.startTURN(); err != nil {
			_ = ln.Close()
			return err
		}
		if s.calls != nil {
			s.calls.useTURN(s.turn)
		}
		s.streams.useTURN(s.turn)
	}
	return nil
}

// startTURN starts the built-in STUN/TURN server. It runs after the HTTP
// listener is bound, so that the HTTP port (chosen by the system when
// addr says port 0) is among the addresses TURN refuses to relay to.
func (s *Server) startTURN() error {
	cfg := s.cfg
	lo, hi, err := turn.ParsePortRange(cfg.TURNRelayPorts)
	if err != nil {
		return fmt.Errorf("server: turn_relay_ports: %w", err)
	}
	allowed, err := turn.ParseAllowedPeers(cfg.TURNAllowedPeers)
	if err != nil {
		return fmt.Errorf("server: turn_allowed_peers: %w", err)
	}
	userQuota := cfg.TURNUserQuota
	if userQuota == 0 {
		userQuota = -1 // no limit, as the turn package spells it
	}
	certFile, keyFile := cfg.TURNTLSFiles()
	t, err := turn.New(turn.Config{
		Addr:         cfg.TURNAddr,
		TLSAddr:      cfg.TURNTLSAddr,
		CertFile:     certFile,
		KeyFile:      keyFile,
		Secret:       cfg.TURNSecret,
		TTL:          cfg.TURNTTL,
		Realm:        cfg.TURNRealm,
		Host:         cfg.TURNHost,
		RelayIP:      cfg.TURNRelayIP,
		MinPort:      lo,
		MaxPort:      hi,
		AllowedPeers: allowed,
		OwnAddrs:     []string{s.ln.Addr().String()},
		UserQuota:    userQuota,
		TotalQuota:   cfg.TURNTotalQuota,
		Metrics:      s.metrics,
	}, s.log)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.Start(ctx); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.turn = t
	return nil
}

// TURN returns the STUN/TURN server (after Listen), or nil when turn_addr
// is not set. Signaling code hands clients its ICEServers.
func (s *Server) TURN() *turn.Server { return s.turn }

// Addr returns the address the server listens on (after Listen).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL returns the server's base URL (after Listen): https:// when it serves
// TLS, http:// otherwise.
func (s *Server) URL() string {
	if s.httpSrv.TLSConfig != nil {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Hub returns the node's engine.
func (s *Server) Hub() *hub.Hub { return s.hub }

// Run serves until ctx is cancelled, then shuts down gracefully within the
// configured shutdown timeout. Listen must have been called.
func (s *Server) Run(ctx context.Context) error {
	if err := s.hub.Start(ctx); err != nil {
		return err
	}
	relCtx, stopRelease := context.WithCancel(ctx)
	defer stopRelease()
	go memrelease.Run(relCtx, s.cfg.MemoryReleaseInterval, s.log, func() { s.releases.Add(1) })
	if err := s.startWebhooks(ctx); err != nil {
		return err
	}
	s.streams.serve()
	s.startConsumers()
	errc := make(chan error, 1)
	go func() {
		if s.httpSrv.TLSConfig != nil {
			errc <- s.httpSrv.ServeTLS(s.ln, "", "")
			return
		}
		errc <- s.httpSrv.Serve(s.ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("server: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown stops accepting connections, closes every client connection with
// the "server shutting down, reconnect" close code and waits for them until
// ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.log.Info("shutting down", "connections", s.hub.Info().Connections)
	errs := []error{s.stopConsumers(ctx)}
	s.api.CloseStreams()
	s.stopWebhooks() // first: the leaves of the clients closed below are still written
	// Streams first: their blocking LL-HLS requests end with them.
	if err := s.streams.close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("server: streams: %w", err))
	}
	hubDone := make(chan error, 1)
	go func() { hubDone <- s.hub.Shutdown(ctx) }()
	if err := s.httpSrv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("server: http shutdown: %w", err))
	}
	if err := <-hubDone; err != nil {
		errs = append(errs, err)
	}
	if s.turn != nil {
		if err := s.turn.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: %w", err))
		}
	}
	s.ws.Close()
	s.sse.Close()
	if s.calls != nil {
		if err := s.calls.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: calls: %w", err))
		}
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
	return errors.Join(errs...)
}
