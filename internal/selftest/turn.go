package selftest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	pturn "github.com/pion/turn/v5"
)

// checkTURN allocates a relay with the join reply's credentials on the
// first TURN URL over UDP (or TCP when no UDP URL is listed).
func checkTURN(ctx context.Context, urls []string, user, pass string, timeout time.Duration) Check {
	c := Check{Name: "turn"}
	var uri *stun.URI
	for _, raw := range urls {
		u, err := stun.ParseURI(raw)
		if err != nil || u.Scheme != stun.SchemeTypeTURN {
			continue
		}
		if uri == nil || (u.Proto == stun.ProtoTypeUDP && uri.Proto != stun.ProtoTypeUDP) {
			uri = u
		}
	}
	if uri == nil {
		c.Status, c.Message = StatusSkipped, "no turn: URL to try (only turns:)"
		return c
	}
	addr := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn net.PacketConn
	if uri.Proto == stun.ProtoTypeTCP {
		var d net.Dialer
		tc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			c.Status, c.Message = StatusFailed, fmt.Sprintf("cannot reach the TURN server at %s over TCP: %v; is the port open?", addr, err)
			return c
		}
		conn = pturn.NewSTUNConn(tc)
	} else {
		network := "udp"
		if ip := net.ParseIP(uri.Host); ip != nil && ip.To4() != nil {
			network = "udp4" // a socket of the server's family: its relay follows it
		}
		uc, err := net.ListenPacket(network, ":0")
		if err != nil {
			c.Status, c.Message = StatusFailed, fmt.Sprintf("selftest: %v", err)
			return c
		}
		conn = uc
	}
	defer conn.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	cl, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Username: user, Password: pass,
		Conn: conn, RTO: 200 * time.Millisecond, LoggerFactory: lf,
	})
	if err != nil {
		c.Status, c.Message = StatusFailed, fmt.Sprintf("selftest: %v", err)
		return c
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		c.Status, c.Message = StatusFailed, fmt.Sprintf("selftest: %v", err)
		return c
	}
	type result struct {
		relay net.PacketConn
		err   error
	}
	done := make(chan result, 1)
	go func() {
		r, err := cl.Allocate()
		done <- result{r, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		c.Status, c.Message = StatusFailed, fmt.Sprintf("no answer from the TURN server at %s over %s within %s: the port is blocked, or turn_host names an address clients cannot reach", addr, uri.Proto, timeout)
		return c
	}
	if r.err != nil {
		var te *stun.TurnError
		switch {
		case errors.As(r.err, &te) && te.ErrorCodeAttr.Code == stun.CodeUnauthorized:
			c.Status, c.Message = StatusFailed, fmt.Sprintf("the TURN server at %s refused the credentials of the join reply (401): the nodes do not share one turn_secret, or a clock is off", addr)
		case errors.As(r.err, &te) && te.ErrorCodeAttr.Code == stun.CodeAllocQuotaReached:
			c.Status, c.Message = StatusFailed, fmt.Sprintf("the TURN server at %s is at its allocation quota (486): raise turn_user_quota or turn_total_quota", addr)
		default:
			c.Status, c.Message = StatusFailed, fmt.Sprintf("the TURN server at %s refused an allocation: %v", addr, r.err)
		}
		return c
	}
	defer r.relay.Close()
	c.Status, c.Message = StatusOK, fmt.Sprintf("the TURN server at %s (%s) accepted the credentials and allocated the relay address %s", addr, uri.Proto, r.relay.LocalAddr())
	return c
}
