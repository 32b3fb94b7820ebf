package turn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pturn "github.com/pion/turn/v5"

	"github.com/switchboardhq/switchboard/internal/turn"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestTLS allocates over TURN-over-TLS and finds the turns: URL in the
// iceServers.
func TestTLS(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	s, _ := start(t, turn.Config{TLSAddr: "127.0.0.1:0", CertFile: cert, KeyFile: key})
	servers, _, err := s.ICEServers("alice", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(s.TLSAddr())
	if urls := strings.Join(servers[1].URLs, " "); !strings.Contains(urls, "turns:127.0.0.1:"+port+"?transport=tcp") {
		t.Errorf("no turns: URL in %s", urls)
	}

	conn, err := tls.Dial("tcp", s.TLSAddr(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test certificate
	if err != nil {
		t.Fatal(err)
	}
	cred := turn.Credential{Username: servers[1].Username, Password: servers[1].Credential}
	cl, err := pturn.NewClient(&pturn.ClientConfig{
		TURNServerAddr: s.TLSAddr(),
		Username:       cred.Username,
		Password:       cred.Password,
		Conn:           pturn.NewSTUNConn(conn),
		RTO:            100 * time.Millisecond,
		LoggerFactory:  quietLogs(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cl.Close(); _ = conn.Close() }()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	_ = relay.Close()
}
