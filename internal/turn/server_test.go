package turn_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/pion/stun/v4"

	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/turn"
)

func TestAllocateCredentials(t *testing.T) {
	s, m := start(t, turn.Config{})
	now := time.Now()
	valid := mint(t, s, "alice")
	expired, _ := turn.MintCredential([]byte(testSecret), "alice", now.Add(-time.Second))
	forged, _ := turn.MintCredential([]byte("not-the-secret"), "alice", now.Add(time.Minute))
	tampered := valid
	tampered.Username = "9999999999:alice" // a later expiry with the old password
	cases := []struct {
		name   string
		cred   turn.Credential
		reason string // "" for success
	}{
		{"valid", valid, ""},
		{"expired", expired, "expired"},
		{"forged", forged, "bad_password"},
		{"tampered expiry", tampered, "bad_password"},
		{"no expiry", turn.Credential{Username: "alice", Password: valid.Password}, "malformed_username"},
	}
	for _, transport := range []string{"udp", "tcp"} {
		for _, tc := range cases {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				before := metrics.Value(m.TURNAllocationsRefused.WithLabelValues(tc.reason))
				cl := client(t, s, transport, tc.cred)
				relay, err := cl.Allocate()
				if tc.reason == "" {
					if err != nil {
						t.Fatalf("allocate: %v", err)
					}
					if got := relay.LocalAddr().(*net.UDPAddr).IP; !got.Equal(net.IPv4(127, 0, 0, 1)) {
						t.Errorf("relay IP %s, want 127.0.0.1", got)
					}
					_ = relay.Close()
					return
				}
				if code := turnCode(err); code != int(stun.CodeUnauthorized) {
					t.Fatalf("allocate: %v (code %d), want 401", err, code)
				}
				if got := metrics.Value(m.TURNAllocationsRefused.WithLabelValues(tc.reason)); got != before+1 {
					t.Errorf("allocations refused for %s: %v, want %v", tc.reason, got, before+1)
				}
			})
		}
	}
	waitFor(t, "allocations to close", func() bool { return s.Allocations() == 0 })
}

// TestRefreshExpired checks that Refresh, like Allocate, refuses a
// credential that expired after the allocation was made.
func TestRefreshExpired(t *testing.T) {
	clock := clockwork.NewFakeClock()
	s, _ := start(t, turn.Config{Clock: clock})
	cred := mint(t, s, "alice")
	cl := client(t, s, "udp", cred)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if res := request(t, cl, cred, stun.MethodRefresh, lifetime(10*time.Minute)); errorCode(t, res) != 0 {
		t.Fatalf("refresh with a valid credential: %s", res)
	}
	clock.Advance(2 * time.Minute)
	if code := errorCode(t, request(t, cl, cred, stun.MethodRefresh, lifetime(10*time.Minute))); code != int(stun.CodeUnauthorized) {
		t.Fatalf("refresh with an expired credential: code %d, want 401", code)
	}
}

// forbidden are peer addresses that must be refused without an allowlist.
var forbidden = []struct {
	name   string
	addr   string
	reason turn.Reason
}{
	{"loopback", "127.0.0.1:9", turn.ReasonLoopback},
	{"loopback other", "127.1.2.3:9", turn.ReasonLoopback},
	{"10/8", "10.1.2.3:9", turn.ReasonPrivate},
	{"172.16/12", "172.16.5.4:9", turn.ReasonPrivate},
	{"172.31", "172.31.255.1:9", turn.ReasonPrivate},
	{"192.168/16", "192.168.1.1:9", turn.ReasonPrivate},
	{"link-local", "169.254.10.10:9", turn.ReasonLinkLocal},
	{"metadata", "169.254.169.254:80", turn.ReasonMetadata},
	{"ecs metadata", "169.254.170.2:80", turn.ReasonMetadata},
	{"oracle metadata", "192.0.0.192:80", turn.ReasonMetadata},
	{"multicast", "224.0.0.1:9", turn.ReasonMulticast},
	{"broadcast", "255.255.255.255:9", turn.ReasonMulticast},
	{"cgnat", "100.64.0.1:9", turn.ReasonCGNAT},
	{"this network", "0.0.0.0:9", turn.ReasonUnspecified},
	{"reserved", "240.0.0.1:9", turn.ReasonReserved},
}

// forbidden6 are IPv6 peers, tried on a server listening on ::1.
var forbidden6 = []struct {
	name   string
	addr   string
	reason turn.Reason
}{
	{"loopback", "[::1]:9", turn.ReasonLoopback},
	{"link-local", "[fe80::1]:9", turn.ReasonLinkLocal},
	{"unique local", "[fc00::1]:9", turn.ReasonPrivate},
	{"aws metadata", "[fd00:ec2::254]:80", turn.ReasonMetadata},
	{"multicast", "[ff02::1]:9", turn.ReasonMulticast},
	{"unspecified", "[::]:9", turn.ReasonUnspecified},
	{"nat64 of 10/8", "[64:ff9b::a00:1]:9", turn.ReasonPrivate},
	{"6to4 of 192.168/16", "[2002:c0a8:101::1]:9", turn.ReasonPrivate},
}

// TestPeersRefused tries every forbidden peer with CreatePermission and
// ChannelBind on a UDP allocation and with Connect on a TCP allocation
// (RFC 6062).
func TestPeersRefused(t *testing.T) {
	s, m := start(t, turn.Config{})
	run := func(t *testing.T, s *turn.Server, m *metrics.Metrics, name, addr string, reason turn.Reason) {
		peer, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name+"/udp", func(t *testing.T) {
			before := metrics.Value(m.TURNPermissionsRefused.WithLabelValues(string(reason)))
			cred := mint(t, s, "alice")
			cl := client(t, s, "udp", cred)
			relay, err := cl.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relay.Close()
			if err := cl.CreatePermission(peer); turnCode(err) != int(stun.CodeForbidden) {
				t.Errorf("CreatePermission %s: %v, want 403", addr, err)
			}
			if code := errorCode(t, request(t, cl, cred, stun.MethodChannelBind, channelNumber(0x4000), peerAddr{peer})); code == 0 {
				t.Errorf("ChannelBind %s succeeded", addr)
			}
			if got := metrics.Value(m.TURNPermissionsRefused.WithLabelValues(string(reason))); got != before+2 {
				t.Errorf("permissions refused for %s: %v, want %v", reason, got, before+2)
			}
		})
		t.Run(name+"/tcp", func(t *testing.T) {
			cred := mint(t, s, "alice")
			cl := client(t, s, "tcp", cred)
			alloc, err := cl.AllocateTCP()
			if err != nil {
				t.Fatal(err)
			}
			defer alloc.Close()
			if err := cl.CreatePermission(peer); turnCode(err) != int(stun.CodeForbidden) {
				t.Errorf("CreatePermission %s: %v, want 403", addr, err)
			}
			if _, err := alloc.Connect(&net.TCPAddr{IP: peer.IP, Port: peer.Port}); turnCode(err) != int(stun.CodeForbidden) {
				t.Errorf("Connect %s: %v, want 403", addr, err)
			}
		})
	}
	for _, tc := range forbidden {
		run(t, s, m, tc.name, tc.addr, tc.reason)
	}
	t.Run("ipv6", func(t *testing.T) {
		if ln, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
			t.Skip("no IPv6 loopback:", err)
		} else {
			ln.Close()
		}
		s6, m6 := start(t, turn.Config{Addr: "[::1]:0"})
		for _, tc := range forbidden6 {
			run(t, s6, m6, tc.name, tc.addr, tc.reason)
		}
	})
	waitFor(t, "allocations to close", func() bool { return s.Allocations() == 0 })
}

// TestRelayAllowed checks that turn_allowed_peers opens a range: a
// datagram and a TCP stream relayed to echo servers on loopback come
// back, while Switchboard's own ports stay refused.
func TestRelayAllowed(t *testing.T) {
	own, err := net.Listen("tcp", "127.0.0.1:0") // stands for the HTTP server
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	s, m := start(t, turn.Config{
		AllowedPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		OwnAddrs:     []string{own.Addr().String()},
	})

	t.Run("udp", func(t *testing.T) {
		echo := udpEcho(t)
		cl := client(t, s, "udp", mint(t, s, "alice"))
		relay, err := cl.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		if _, err := relay.WriteTo([]byte("ping"), echo); err != nil {
			t.Fatal(err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, from, err := relay.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no echo through the relay: %v", err)
		}
		if string(buf[:n]) != "ping" || from.String() != echo.String() {
			t.Fatalf("got %q from %s, want ping from %s", buf[:n], from, echo)
		}

		// The TURN port itself: the IP is allowed, the port is ours.
		before := metrics.Value(m.TURNPermissionsRefused.WithLabelValues(string(turn.ReasonOwnAddress)))
		if _, err := relay.WriteTo([]byte("loop"), s.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the datagram to our own port to be refused", func() bool {
			return metrics.Value(m.TURNPermissionsRefused.WithLabelValues(string(turn.ReasonOwnAddress))) > before
		})
	})

	t.Run("tcp", func(t *testing.T) {
		echo := tcpEcho(t)
		cl := client(t, s, "tcp", mint(t, s, "alice"))
		alloc, err := cl.AllocateTCP()
		if err != nil {
			t.Fatal(err)
		}
		defer alloc.Close()
		conn, err := alloc.Dial("tcp", echo.String())
		if err != nil {
			t.Fatalf("dial through the relay: %v", err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo through the relay: %q, %v", buf, err)
		}

		// The HTTP port: refused with 447, and no connection arrives.
		before := metrics.Value(m.TURNPermissionsRefused.WithLabelValues(string(turn.ReasonOwnAddress)))
		if _, err := alloc.Connect(own.Addr()); turnCode(err) != int(stun.CodeConnTimeoutOrFailure) {
			t.Errorf("Connect to our HTTP port: %v, want 447", err)
		}
		if got := metrics.Value(m.TURNPermissionsRefused.WithLabelValues(string(turn.ReasonOwnAddress))); got != before+1 {
			t.Errorf("own-address refusals %v, want %v", got, before+1)
		}
		_ = own.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
		if c, err := own.Accept(); err == nil {
			c.Close()
			t.Error("the relay connected to our HTTP port")
		}
	})
}

// TestQuota checks the per-user and total allocation quotas: 486
// Allocation Quota Reached, and a place freed by a closed allocation.
func TestQuota(t *testing.T) {
	s, m := start(t, turn.Config{UserQuota: 2, TotalQuota: 3})
	alloc := func(user string) (net.PacketConn, error) {
		relay, err := client(t, s, "udp", mint(t, s, user)).Allocate()
		if err == nil {
			t.Cleanup(func() { _ = relay.Close() }) // stops the client's refresh timers
		}
		return relay, err
	}
	a1, err := alloc("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := alloc("alice"); turnCode(err) != int(stun.CodeAllocQuotaReached) {
		t.Fatalf("third allocation of alice: %v, want 486", err)
	}
	if got := metrics.Value(m.TURNAllocationsRefused.WithLabelValues("quota_user")); got != 1 {
		t.Errorf("quota_user refusals %v, want 1", got)
	}
	if _, err := alloc("bob"); err != nil {
		t.Fatalf("bob has his own quota: %v", err)
	}
	if _, err := alloc("carol"); turnCode(err) != int(stun.CodeAllocQuotaReached) {
		t.Fatalf("fourth allocation on the server: %v, want 486", err)
	}
	if got := metrics.Value(m.TURNAllocationsRefused.WithLabelValues("quota_total")); got != 1 {
		t.Errorf("quota_total refusals %v, want 1", got)
	}
	if got := metrics.Value(m.TURNAllocations); got != 3 {
		t.Errorf("allocations gauge %v, want 3", got)
	}
	// Closing an allocation (Refresh with lifetime 0) frees its place.
	_ = a1.Close()
	waitFor(t, "the closed allocation to be released", func() bool { return s.Allocations() == 2 })
	if _, err := alloc("alice"); err != nil {
		t.Fatalf("alice after closing one: %v", err)
	}
}

// TestICEServers checks the iceServers handed to clients, and that the
// credential in them allocates.
func TestICEServers(t *testing.T) {
	s, _ := start(t, turn.Config{})
	servers, expires, err := s.ICEServers("alice", "rtc.example.com:8443")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(expires); d < 59*time.Minute || d > time.Hour+time.Second {
		t.Errorf("expires in %s, want about the default TTL of 1h", d)
	}
	port := s.UDPAddr().Port
	want := []string{
		"stun:rtc.example.com:" + itoa(port),
		"turn:rtc.example.com:" + itoa(port) + "?transport=udp",
		"turn:rtc.example.com:" + itoa(port) + "?transport=tcp",
	}
	if len(servers) != 2 || len(servers[0].URLs) != 1 || len(servers[1].URLs) != 2 {
		t.Fatalf("servers %+v", servers)
	}
	got := append(append([]string{}, servers[0].URLs...), servers[1].URLs...)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("url %d: %s, want %s", i, got[i], want[i])
		}
	}
	if servers[0].Username != "" || servers[1].Username == "" || servers[1].Credential == "" {
		t.Errorf("credentials: %+v", servers)
	}
	cl := client(t, s, "udp", turn.Credential{Username: servers[1].Username, Password: servers[1].Credential})
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate with the iceServers credential: %v", err)
	}
	_ = relay.Close()
	// STUN answers without credentials.
	if _, err := cl.SendBindingRequest(); err != nil {
		t.Errorf("STUN binding: %v", err)
	}
}

// TestCloseEndsAllocations checks that Close ends open allocations and
// TCP control connections and waits for them.
func TestCloseEndsAllocations(t *testing.T) {
	s, err := turn.New(turn.Config{Addr: "127.0.0.1:0", Secret: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	relay, err := client(t, s, "udp", mint(t, s, "alice")).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close() // stops the client's refresh timers
	alloc, err := client(t, s, "tcp", mint(t, s, "alice")).AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	if s.Allocations() != 2 {
		t.Fatalf("allocations %d, want 2", s.Allocations())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Allocations() != 0 {
		t.Fatalf("allocations after Close: %d", s.Allocations())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// udpEcho runs a UDP echo server on loopback until the test ends.
func udpEcho(t *testing.T) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr()
}

// tcpEcho runs a TCP echo server on loopback until the test ends.
func tcpEcho(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr()
}
