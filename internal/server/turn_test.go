package server_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	pturn "github.com/pion/turn/v5"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestTURNLifecycle: with turn_addr set the node serves TURN, refuses to
// relay to its own HTTP port even with loopback allowed, and stops TURN on
// shutdown.
func TestTURNLifecycle(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		c.TURNAddr = "127.0.0.1:0"
		c.TURNAllowedPeers = []string{"127.0.0.0/8"}
	})
	tu := ts.TURN()
	if tu == nil {
		t.Fatal("TURN is off")
	}
	servers, _, err := tu.ICEServers("alice", ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 2 || servers[1].Username == "" {
		t.Fatalf("iceServers %+v", servers)
	}

	tc, err := net.Dial("tcp", tu.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	cl, err := pturn.NewClient(&pturn.ClientConfig{
		TURNServerAddr: tu.TCPAddr().String(),
		Username:       servers[1].Username,
		Password:       servers[1].Credential,
		Conn:           pturn.NewSTUNConn(tc),
		RTO:            100 * time.Millisecond,
		LoggerFactory:  lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := cl.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	httpAddr, _ := net.ResolveTCPAddr("tcp", ts.Addr())
	var te *stun.TurnError
	if _, err := alloc.Connect(httpAddr); err == nil {
		t.Fatal("the relay connected to the node's HTTP port")
	} else if !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeConnTimeoutOrFailure {
		t.Fatalf("Connect to the HTTP port: %v, want 447", err)
	}
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	if tu.Allocations() != 0 {
		t.Errorf("%d allocations open after shutdown", tu.Allocations())
	}
	if _, err := net.Dial("tcp", tu.TCPAddr().String()); err == nil {
		t.Error("TURN still listens after shutdown")
	}
}
