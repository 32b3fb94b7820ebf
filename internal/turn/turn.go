// Package turn is Switchboard's built-in STUN and TURN server (RFC 8656,
// with TCP relaying per RFC 6062), built on pion/turn.
//
// Clients get time-limited credentials in the TURN REST convention from
// the signaling code (Server.Mint, Server.ICEServers); any node that knows
// the shared secret accepts them, so several nodes need the same
// turn_secret. A peer policy refuses relaying to loopback, private,
// link-local, CGNAT, multicast and cloud metadata addresses and to
// Switchboard's own ports, so that the relay cannot be used to reach the
// operator's internal network; operators open ranges with AllowedPeers.
// Each user may hold a bounded number of allocations.
package turn

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/pion/stun/v4"
	pturn "github.com/pion/turn/v5"

	"github.com/switchboardhq/switchboard/internal/metrics"
)

// Defaults of the Config fields left zero.
const (
	DefaultTTL       = time.Hour
	DefaultRealm     = "switchboard"
	DefaultMinPort   = 49152
	DefaultMaxPort   = 65535
	DefaultUserQuota = 32
)

// Config configures a Server. The zero value of each field but Addr is a
// usable default.
type Config struct {
	// Addr is the UDP and TCP listening address (host:port) for STUN and
	// TURN. Required; port 0 picks a free port (tests).
	Addr string
	// TLSAddr, when set, also serves TURN over TLS (turns:) on this TCP
	// address, with the certificate in CertFile and KeyFile (PEM).
	TLSAddr, CertFile, KeyFile string
	// Secret signs the credentials. Empty: one is generated, which is only
	// right for a single node (see Server.GeneratedSecret).
	Secret string
	// TTL is the lifetime of minted credentials (default DefaultTTL).
	// Allocate and Refresh check it, so a relayed call outlives its
	// credential by at most the allocation lifetime (10 minutes) unless the
	// client gets new ones and restarts ICE.
	TTL time.Duration
	// Realm is the TURN realm (default DefaultRealm).
	Realm string
	// RelayIP is the IP advertised in relayed addresses: the public IP
	// behind a 1:1 NAT. Default: the listener's IP; for a listener on all
	// interfaces, the host's first global unicast IPv4 address (127.0.0.1
	// when it has none).
	RelayIP string
	// MinPort and MaxPort bound the relay ports (default 49152 to 65535).
	MinPort, MaxPort uint16
	// AllowedPeers are ranges relaying may reach although the policy
	// would refuse them (loopback, private, link-local, CGNAT, reserved).
	// Unspecified, multicast, metadata and own addresses stay refused.
	AllowedPeers []netip.Prefix
	// OwnAddrs are Switchboard's other listening addresses (host:port),
	// which no allocation may send to: the HTTP address, typically. The
	// TURN listeners are added by Start. An unspecified host (":8000",
	// "0.0.0.0:8000") stands for every IP of this host.
	OwnAddrs []string
	// UserQuota is the most allocations one user may hold at once
	// (default DefaultUserQuota; negative: no limit).
	UserQuota int
	// TotalQuota is the most allocations the server holds at once (0: no
	// limit but the relay port range).
	TotalQuota int
	// Host is the host name or IP clients put in their iceServers URLs.
	// Default: the host passed to ICEServers, else the relay IP.
	Host string
	// Clock tells the time when checking credentials (default: the real
	// clock).
	Clock clockwork.Clock
	// Metrics receives the TURN metrics; nil: none are recorded.
	Metrics *metrics.Metrics
}

// Server is a STUN and TURN server. After Start its methods are safe for
// concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	secret []byte
	clock  clockwork.Clock
	quota  *quota

	// Set by Start, read-only afterwards.
	policy  *policy
	pion    *pturn.Server
	udpAddr *net.UDPAddr
	tcpAddr *net.TCPAddr
	tlsAddr *net.TCPAddr
	relayIP net.IP
	tracked *trackedConns

	closeOnce sync.Once
	closeErr  error

	// GeneratedSecret is true when Config.Secret was empty and the
	// server made its own: credentials minted by other nodes fail here.
	GeneratedSecret bool
}

// New checks cfg and builds a server; Start opens its listeners.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("turn: no listening address")
	}
	if (cfg.TLSAddr != "") && (cfg.CertFile == "" || cfg.KeyFile == "") {
		return nil, errors.New("turn: a TLS address needs a certificate and a key file")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.MinPort == 0 && cfg.MaxPort == 0 {
		cfg.MinPort, cfg.MaxPort = DefaultMinPort, DefaultMaxPort
	}
	if cfg.MinPort == 0 || cfg.MaxPort < cfg.MinPort {
		return nil, fmt.Errorf("turn: relay port range %d-%d is empty", cfg.MinPort, cfg.MaxPort)
	}
	if cfg.UserQuota == 0 {
		cfg.UserQuota = DefaultUserQuota
	}
	if cfg.RelayIP != "" {
		if _, err := netip.ParseAddr(cfg.RelayIP); err != nil {
			return nil, fmt.Errorf("turn: relay IP: %w", err)
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:    cfg,
		log:    logger.With("component", "turn"),
		secret: []byte(cfg.Secret),
		clock:  cfg.Clock,
		quota:  newQuota(max(cfg.UserQuota, 0), cfg.TotalQuota),
	}
	if cfg.Secret == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		s.secret = []byte(base64.RawURLEncoding.EncodeToString(b[:]))
		s.GeneratedSecret = true
	}
	return s, nil
}

// Start opens the UDP and TCP listeners (and the TLS one when configured)
// and starts serving. ctx bounds the binding only; Close stops the server.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	pc, ln, err := listenUDPAndTCP(ctx, &lc, s.cfg.Addr)
	if err != nil {
		return err
	}
	s.udpAddr = pc.LocalAddr().(*net.UDPAddr)
	s.tcpAddr = ln.Addr().(*net.TCPAddr)
	s.tracked = &trackedConns{conns: map[net.Conn]bool{}}
	listeners := []net.Listener{s.tracked.wrap(ln)}
	if s.cfg.TLSAddr != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			_ = pc.Close()
			_ = ln.Close()
			return fmt.Errorf("turn: tls certificate: %w", err)
		}
		tln, err := lc.Listen(ctx, "tcp", s.cfg.TLSAddr)
		if err != nil {
			_ = pc.Close()
			_ = ln.Close()
			return fmt.Errorf("turn: listen tls: %w", err)
		}
		s.tlsAddr = tln.Addr().(*net.TCPAddr)
		listeners = append(listeners, tls.NewListener(s.tracked.wrap(tln), &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		}))
	}

	bindIP := s.udpAddr.IP
	s.relayIP = s.chooseRelayIP(bindIP)
	own := []netip.AddrPort{s.udpAddr.AddrPort(), s.tcpAddr.AddrPort()}
	if s.tlsAddr != nil {
		own = append(own, s.tlsAddr.AddrPort())
	}
	for _, a := range s.cfg.OwnAddrs {
		ap, err := parseOwnAddr(a)
		if err != nil {
			s.closeAll(pc, listeners)
			return err
		}
		own = append(own, ap)
	}
	hostIPs := interfaceIPs() // where an own address on 0.0.0.0 is reachable
	if ip, ok := netip.AddrFromSlice(s.relayIP); ok {
		hostIPs = append(hostIPs, ip)
	}
	s.policy = newPolicy(s.cfg.AllowedPeers, own, hostIPs)

	gen := &relayGen{
		inner: &pturn.RelayAddressGeneratorPortRange{
			RelayAddress: s.relayIP,
			Address:      bindIP.String(),
			MinPort:      s.cfg.MinPort,
			MaxPort:      s.cfg.MaxPort,
			MaxRetries:   32,
		},
		bindIP: bindIP,
		srv:    s,
	}
	conf := pturn.ServerConfig{
		Realm:         s.cfg.Realm,
		LoggerFactory: loggerFactory{s.log},
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.checkQuota,
		EventHandler:  pturn.EventHandler{OnAuth: s.onAuth},
		PacketConnConfigs: []pturn.PacketConnConfig{{
			PacketConn: pc, RelayAddressGenerator: gen, PermissionHandler: s.permit,
		}},
	}
	for _, l := range listeners {
		conf.ListenerConfigs = append(conf.ListenerConfigs, pturn.ListenerConfig{
			Listener: l, RelayAddressGenerator: gen, PermissionHandler: s.permit,
		})
	}
	srv, err := pturn.NewServer(conf)
	if err != nil {
		s.closeAll(pc, listeners)
		return fmt.Errorf("turn: %w", err)
	}
	s.pion = srv
	s.log.Info("TURN listening", "udp", s.udpAddr.String(), "tcp", s.tcpAddr.String(),
		"tls", s.TLSAddr(), "relay_ip", s.relayIP.String(), "realm", s.cfg.Realm)
	if s.GeneratedSecret {
		s.log.Info("turn_secret is empty: generated one for this process; with several nodes set the same turn_secret on each")
	}
	return nil
}

// listenUDPAndTCP binds UDP and TCP on the same port of addr. With port 0
// the TCP port the system chose for UDP may be taken: it tries again.
func listenUDPAndTCP(ctx context.Context, lc *net.ListenConfig, addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("turn: listen udp: %w", err)
		}
		ua := pc.LocalAddr().(*net.UDPAddr)
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(ua.IP.String(), strconv.Itoa(ua.Port)))
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		if port != "0" || try == 9 {
			return nil, nil, fmt.Errorf("turn: listen tcp: %w", err)
		}
	}
}

func (s *Server) closeAll(pc net.PacketConn, lns []net.Listener) {
	_ = pc.Close()
	for _, l := range lns {
		_ = l.Close()
	}
}

// chooseRelayIP picks the advertised relay IP (see Config.RelayIP).
func (s *Server) chooseRelayIP(bindIP net.IP) net.IP {
	if s.cfg.RelayIP != "" {
		return net.ParseIP(s.cfg.RelayIP)
	}
	if !bindIP.IsUnspecified() {
		return bindIP
	}
	for _, ip := range interfaceIPs() {
		if ip.Is4() && ip.IsGlobalUnicast() && !ip.IsPrivate() {
			return net.IP(ip.AsSlice())
		}
	}
	for _, ip := range interfaceIPs() {
		if ip.Is4() && ip.IsGlobalUnicast() {
			return net.IP(ip.AsSlice())
		}
	}
	s.log.Warn("TURN listens on every interface but the host has no global IPv4 address: relayed addresses will say 127.0.0.1; set turn_relay_ip")
	return net.IPv4(127, 0, 0, 1)
}

// interfaceIPs returns the host's interface addresses (none on error).
func interfaceIPs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// parseOwnAddr parses an own address; an empty host means every IP.
func parseOwnAddr(a string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("turn: own address %q: %w", a, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("turn: own address %q: bad port", a)
	}
	ip := netip.IPv4Unspecified()
	if host != "" && host != "localhost" {
		if ip, err = netip.ParseAddr(host); err != nil {
			// A host name: every IP of this host, like an unspecified one.
			ip = netip.IPv4Unspecified()
		}
	} else if host == "localhost" {
		ip = netip.MustParseAddr("127.0.0.1")
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// UDPAddr returns the UDP listening address (after Start).
func (s *Server) UDPAddr() *net.UDPAddr { return s.udpAddr }

// TCPAddr returns the TCP listening address (after Start).
func (s *Server) TCPAddr() *net.TCPAddr { return s.tcpAddr }

// TLSAddr returns the TLS listening address, or "" without TLS.
func (s *Server) TLSAddr() string {
	if s.tlsAddr == nil {
		return ""
	}
	return s.tlsAddr.String()
}

// RelayIP returns the IP relayed addresses carry (after Start).
func (s *Server) RelayIP() net.IP { return s.relayIP }

// Allocations returns the number of open allocations.
func (s *Server) Allocations() int { return s.quota.count() }

// Close stops the listeners, closes the TCP client connections and waits,
// until ctx is done, for every allocation's relay socket to close. It is
// safe to call more than once and without Start.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		if s.pion == nil {
			return
		}
		if err := s.pion.Close(); err != nil {
			s.closeErr = fmt.Errorf("turn: close: %w", err)
		}
		s.tracked.closeAll()
	})
	if s.pion == nil {
		return nil
	}
	select {
	case <-s.quota.idle():
		return s.closeErr
	case <-ctx.Done():
		return errors.Join(s.closeErr, fmt.Errorf("turn: close: %d allocations still open: %w", s.Allocations(), ctx.Err()))
	}
}

// Mint returns a credential for user valid for ttl (Config.TTL when ttl
// is not positive).
func (s *Server) Mint(user string, ttl time.Duration) (Credential, error) {
	if ttl <= 0 {
		ttl = s.cfg.TTL
	}
	return MintCredential(s.secret, user, s.clock.Now().Add(ttl))
}

// authenticate is the AuthHandler: it accepts unexpired REST usernames of
// this realm and returns the user ID (for quotas) and the long-term key.
// A forged password passes here and fails pion's MESSAGE-INTEGRITY check.
func (s *Server) authenticate(ra *pturn.RequestAttributes) (userID string, key []byte, ok bool) {
	refuse := func(reason string) (string, []byte, bool) {
		if ra.Method == stun.MethodAllocate {
			s.allocRefused(reason)
		}
		s.log.Debug("TURN credential refused", "reason", reason, "method", ra.Method.String(), "client", addrString(ra.SrcAddr))
		return "", nil, false
	}
	expires, user, err := ParseUsername(ra.Username)
	if err != nil {
		return refuse(refusedMalformed)
	}
	if ra.Realm != s.cfg.Realm {
		return refuse(refusedRealm)
	}
	if !s.clock.Now().Before(expires) {
		return refuse(refusedExpired)
	}
	return user, pturn.GenerateAuthKey(ra.Username, ra.Realm, password(s.secret, ra.Username)), true
}

// onAuth counts Allocate requests whose MESSAGE-INTEGRITY failed: a
// password that the secret did not sign.
func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if verdict {
		return
	}
	if method == stun.MethodAllocate.String() {
		s.allocRefused(refusedBadKey)
	}
	s.log.Debug("TURN credential refused", "reason", refusedBadKey, "method", method, "client", addrString(src), "username", username)
}

// checkQuota is the QuotaHandler: pion answers 486 Allocation Quota
// Reached when it returns false. The relay generator takes the quota for
// real (and answers 508 when a concurrent request took the last place).
func (s *Server) checkQuota(userID, _ string, src net.Addr) bool {
	if r := s.quota.check(userID); r != "" {
		s.allocRefused(r)
		s.log.Debug("TURN allocation refused", "reason", r, "user", userID, "client", addrString(src))
		return false
	}
	return true
}

// acquire takes one allocation of the quota for user.
func (s *Server) acquire(user string) (func(), error) {
	release, r := s.quota.acquire(user)
	if r != "" {
		s.allocRefused(r)
		if r == refusedQuotaUser {
			return nil, errQuotaUser
		}
		return nil, errQuotaTotal
	}
	m := s.cfg.Metrics
	if m != nil {
		m.TURNAllocations.Inc()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			release()
			if m != nil {
				m.TURNAllocations.Dec()
			}
		})
	}, nil
}

// permit is the PermissionHandler of CreatePermission, ChannelBind and
// Connect.
func (s *Server) permit(src net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	if r := s.policy.checkIP(ip); r != "" {
		s.peerRefused(r)
		s.log.Debug("TURN peer refused", "reason", string(r), "peer", ip.String(), "client", addrString(src))
		return false
	}
	return true
}

func (s *Server) allocRefused(reason string) {
	if m := s.cfg.Metrics; m != nil {
		m.TURNAllocationsRefused.WithLabelValues(reason).Inc()
	}
}

func (s *Server) peerRefused(r Reason) {
	if m := s.cfg.Metrics; m != nil {
		m.TURNPermissionsRefused.WithLabelValues(string(r)).Inc()
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// trackedConns remembers the TCP connections the TURN listeners accepted,
// so that Close can end them: pion/turn closes its listeners but leaves
// accepted connections to their clients.
type trackedConns struct {
	mu     sync.Mutex
	conns  map[net.Conn]bool // guarded by mu
	closed bool              // guarded by mu
}

func (t *trackedConns) wrap(ln net.Listener) net.Listener { return &trackingListener{ln, t} }

func (t *trackedConns) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = true
	return true
}

func (t *trackedConns) remove(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

func (t *trackedConns) closeAll() {
	t.mu.Lock()
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // removes c, taking t.mu
	}
}

type trackingListener struct {
	net.Listener
	t *trackedConns
}

// Accept accepts a connection and tracks it until it is closed.
func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: l.t}
	if !l.t.add(tc) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	return tc, nil
}

type trackedConn struct {
	net.Conn
	t    *trackedConns
	once sync.Once
}

// Close closes the connection and forgets it.
func (c *trackedConn) Close() error {
	c.once.Do(func() { c.t.remove(c) })
	return c.Conn.Close()
}

// hostOnly strips a port from host, if any.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}
