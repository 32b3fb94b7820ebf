package turn_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	pturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/turn"
)

const testSecret = "test-secret-0123456789"

// start runs a TURN server on an ephemeral loopback port for the test.
func start(t *testing.T, cfg turn.Config) (*turn.Server, *metrics.Metrics) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Secret == "" {
		cfg.Secret = testSecret
	}
	m := metrics.New(prometheus.NewRegistry())
	cfg.Metrics = m
	s, err := turn.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, m
}

// quietLogs silences the pion client.
func quietLogs() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

// client is a pion TURN client over UDP ("udp") or over a TCP control
// connection ("tcp"), listening until the test ends.
func client(t *testing.T, s *turn.Server, transport string, c turn.Credential) *pturn.Client {
	t.Helper()
	var conn net.PacketConn
	var server string
	switch transport {
	case "udp":
		pc, err := net.ListenPacket("udp", net.JoinHostPort(s.UDPAddr().IP.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		conn, server = pc, s.UDPAddr().String()
	case "tcp":
		tc, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn, server = pturn.NewSTUNConn(tc), s.TCPAddr().String()
	default:
		t.Fatalf("transport %q", transport)
	}
	cl, err := pturn.NewClient(&pturn.ClientConfig{
		TURNServerAddr: server,
		STUNServerAddr: server,
		Username:       c.Username,
		Password:       c.Password,
		Realm:          turn.DefaultRealm,
		Conn:           conn,
		RTO:            100 * time.Millisecond,
		LoggerFactory:  quietLogs(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		_ = conn.Close()
	})
	return cl
}

// mint mints a valid credential for user or fails the test.
func mint(t *testing.T, s *turn.Server, user string) turn.Credential {
	t.Helper()
	c, err := s.Mint(user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// turnCode returns the STUN error code of err, or 0.
func turnCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// attr adds a raw attribute to a STUN message: the pion client does not
// export the TURN attributes the raw requests below need.
type attr struct {
	t stun.AttrType
	v []byte
}

func (a attr) AddTo(m *stun.Message) error {
	m.Add(a.t, a.v)
	return nil
}

func channelNumber(n uint16) attr {
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, n)
	return attr{stun.AttrChannelNumber, v}
}

func lifetime(d time.Duration) attr {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return attr{stun.AttrLifetime, v}
}

// peerAddr is an XOR-PEER-ADDRESS attribute.
type peerAddr struct{ addr *net.UDPAddr }

func (p peerAddr) AddTo(m *stun.Message) error {
	return (&stun.XORMappedAddress{IP: p.addr.IP, Port: p.addr.Port}).AddToAs(m, stun.AttrXORPeerAddress)
}

// request sends an authenticated TURN request of method with extra
// attributes on cl's 5-tuple, first fetching a nonce, and returns the
// response.
func request(t *testing.T, cl *pturn.Client, c turn.Credential, method stun.Method, extra ...stun.Setter) *stun.Message {
	t.Helper()
	probe, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, append(extra, stun.Fingerprint)...)...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.PerformTransaction(probe, cl.TURNServerAddr(), false)
	if err != nil {
		t.Fatalf("%s probe: %v", method, err)
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(res.Msg); err != nil {
		t.Fatalf("%s probe: no nonce in %s", method, res.Msg)
	}
	if err := realm.GetFrom(res.Msg); err != nil {
		t.Fatalf("%s probe: no realm in %s", method, res.Msg)
	}
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, extra...)
	setters = append(setters, stun.NewUsername(c.Username), realm, nonce,
		stun.NewLongTermIntegrity(c.Username, realm.String(), c.Password), stun.Fingerprint)
	msg, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	res, err = cl.PerformTransaction(msg, cl.TURNServerAddr(), false)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res.Msg
}

// errorCode returns the ERROR-CODE of an error response, or 0 for a
// success response.
func errorCode(t *testing.T, m *stun.Message) int {
	t.Helper()
	if m.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(m); err != nil {
		t.Fatalf("error response without code: %s", m)
	}
	return int(code.Code)
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
