package turn

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/transport/v5/reuseport"
	pturn "github.com/pion/turn/v5"
)

// Errors the relay returns to pion/turn, which answers the client with an
// error response (and logs the cause at debug level).
var (
	errQuotaUser  = errors.New("turn: user allocation quota reached")
	errQuotaTotal = errors.New("turn: server allocation quota reached")
	errPeer       = errors.New("turn: peer refused by policy")
)

// The reasons an Allocate is refused, for the allocations-refused metric.
const (
	refusedExpired    = "expired"
	refusedMalformed  = "malformed_username"
	refusedRealm      = "wrong_realm"
	refusedBadKey     = "bad_password"
	refusedQuotaUser  = "quota_user"
	refusedQuotaTotal = "quota_total"
)

// quota counts open allocations per user and in total.
type quota struct {
	perUser, total int // 0: no limit

	mu    sync.Mutex
	users map[string]int // guarded by mu
	n     int            // guarded by mu
	zero  chan struct{}  // guarded by mu; closed while n == 0
}

func newQuota(perUser, total int) *quota {
	z := make(chan struct{})
	close(z)
	return &quota{perUser: perUser, total: total, users: map[string]int{}, zero: z}
}

// check returns the refusal reason user would meet now, or "".
func (q *quota) check(user string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checkLocked(user)
}

// checkLocked is check; q.mu must be held.
func (q *quota) checkLocked(user string) string {
	switch {
	case q.perUser > 0 && q.users[user] >= q.perUser:
		return refusedQuotaUser
	case q.total > 0 && q.n >= q.total:
		return refusedQuotaTotal
	}
	return ""
}

// acquire takes one allocation for user, or returns the refusal reason.
// The returned release gives it back; calling it more than once is safe.
func (q *quota) acquire(user string) (release func(), reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.checkLocked(user); r != "" {
		return nil, r
	}
	q.users[user]++
	if q.n == 0 {
		q.zero = make(chan struct{})
	}
	q.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.users[user]--; q.users[user] == 0 {
				delete(q.users, user)
			}
			if q.n--; q.n == 0 {
				close(q.zero)
			}
		})
	}, ""
}

// count returns the number of open allocations.
func (q *quota) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// idle returns a channel closed while no allocation is open.
func (q *quota) idle() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.zero
}

// relayGen is the RelayAddressGenerator of every listener: pion's port
// range generator, plus the quota (taken when a relay socket opens, given
// back when it closes) and the peer policy for what pion cannot see
// through its PermissionHandler (the peer's port).
type relayGen struct {
	inner  *pturn.RelayAddressGeneratorPortRange
	bindIP net.IP // the relay sockets' local IP (may be unspecified)
	srv    *Server
}

var _ pturn.RelayAddressGenerator = (*relayGen)(nil)

// Validate implements turn.RelayAddressGenerator.
func (g *relayGen) Validate() error {
	if err := g.inner.Validate(); err != nil {
		return fmt.Errorf("turn: relay addresses: %w", err)
	}
	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator: a UDP
// allocation's relay socket.
func (g *relayGen) AllocatePacketConn(conf pturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if conf.UserID == "" { // pion probing for an even port: closed at once
		return g.inner.AllocatePacketConn(conf)
	}
	release, err := g.srv.acquire(conf.UserID)
	if err != nil {
		return nil, nil, err
	}
	conn, addr, err := g.inner.AllocatePacketConn(conf)
	if err != nil {
		release()
		return nil, nil, err
	}
	return &relayPacketConn{PacketConn: conn, srv: g.srv, release: release}, addr, nil
}

// AllocateListener implements turn.RelayAddressGenerator: a TCP
// allocation's relay listener (RFC 6062).
func (g *relayGen) AllocateListener(conf pturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	release, err := g.srv.acquire(conf.UserID)
	if err != nil {
		return nil, nil, err
	}
	ln, addr, err := g.inner.AllocateListener(conf)
	if err != nil {
		release()
		return nil, nil, err
	}
	return &relayListener{Listener: ln, release: release}, addr, nil
}

// AllocateConn implements turn.RelayAddressGenerator: the outgoing TCP
// connection of a Connect request. pion has already asked the
// PermissionHandler about the peer's IP; the port is checked here.
func (g *relayGen) AllocateConn(conf pturn.AllocateConnConfig) (net.Conn, error) {
	peer, ok := addrPortOf(conf.RemoteAddr)
	if !ok {
		return nil, fmt.Errorf("%w: %v", errPeer, conf.RemoteAddr)
	}
	if r := g.srv.policy.checkAddr(peer); r != "" {
		g.srv.peerRefused(r)
		return nil, fmt.Errorf("%w: %s (%s)", errPeer, peer, r)
	}
	local, ok := conf.LocalAddr.(*net.TCPAddr)
	if !ok {
		return nil, fmt.Errorf("turn: relay address %v is not TCP", conf.LocalAddr)
	}
	d := net.Dialer{
		// The relay address carries the advertised IP, which behind a NAT
		// is not ours: bind the relay port on the listening IP instead.
		LocalAddr: &net.TCPAddr{IP: g.bindIP, Port: local.Port},
		Control:   reuseport.Control,
		Timeout:   30 * time.Second, // RFC 6062: at least 30 s
	}
	c, err := d.Dial(conf.Network, conf.RemoteAddr.String())
	if err != nil {
		return nil, fmt.Errorf("turn: connect %s: %w", conf.RemoteAddr, err)
	}
	return c, nil
}

// relayPacketConn is a UDP allocation's relay socket: it refuses to send
// to Switchboard's own addresses and gives the quota back when closed.
type relayPacketConn struct {
	net.PacketConn
	srv     *Server
	release func()
}

// WriteTo sends p to addr unless addr is one of Switchboard's own
// listening addresses. Permissions are per IP, so a client allowed to
// reach a peer IP could otherwise name any port on it.
func (c *relayPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ap, ok := addrPortOf(addr); !ok || c.srv.policy.checkOwn(ap) != "" {
		c.srv.peerRefused(ReasonOwnAddress)
		return 0, fmt.Errorf("%w: %v (%s)", errPeer, addr, ReasonOwnAddress)
	}
	return c.PacketConn.WriteTo(p, addr)
}

// Close closes the socket and releases the allocation's quota.
func (c *relayPacketConn) Close() error {
	defer c.release()
	return c.PacketConn.Close()
}

// relayListener is a TCP allocation's relay listener; closing it releases
// the allocation's quota.
type relayListener struct {
	net.Listener
	release func()
}

// Close closes the listener and releases the allocation's quota.
func (l *relayListener) Close() error {
	defer l.release()
	return l.Listener.Close()
}
