package turn

import (
	"net/netip"
	"testing"
)

func TestPolicy(t *testing.T) {
	allow, err := ParseAllowedPeers([]string{"10.1.0.0/16", "::ffff:192.168.7.0/120", "fd12::/16"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPolicy(allow,
		[]netip.AddrPort{netip.MustParseAddrPort("203.0.113.5:8000"), netip.MustParseAddrPort("0.0.0.0:3478")},
		[]netip.Addr{netip.MustParseAddr("198.51.100.7")})
	cases := map[string]Reason{
		// Public peers pass.
		"8.8.8.8:53":            "",
		"[2001:4860::8888]:53":  "",
		"203.0.113.5:8001":      "",
		"198.51.100.7:3479":     "",
		"[::ffff:8.8.8.8]:53":   "",
		"[64:ff9b::808:808]:53": "", // NAT64 of a public address
		"[2002:808:808::1]:53":  "",
		"172.32.0.1:1":          "", // just outside 172.16/12
		"100.128.0.1:1":         "", // just outside 100.64/10
		"169.253.255.255:1":     "",
		"223.255.255.255:1":     "",
		// Refused.
		"127.0.0.1:1":               ReasonLoopback,
		"[::1]:1":                   ReasonLoopback,
		"[::ffff:127.0.0.1]:1":      ReasonLoopback,
		"10.0.0.1:1":                ReasonPrivate,
		"172.16.0.1:1":              ReasonPrivate,
		"172.31.255.255:1":          ReasonPrivate,
		"192.168.0.1:1":             ReasonPrivate,
		"[fc00::1]:1":               ReasonPrivate,
		"[fdff::1]:1":               ReasonPrivate,
		"169.254.0.1:1":             ReasonLinkLocal,
		"[fe80::1]:1":               ReasonLinkLocal,
		"[fe80::1%eth0]:1":          ReasonLinkLocal,
		"100.64.0.1:1":              ReasonCGNAT,
		"100.127.255.255:1":         ReasonCGNAT,
		"224.0.0.1:1":               ReasonMulticast,
		"239.255.255.250:1900":      ReasonMulticast,
		"255.255.255.255:1":         ReasonMulticast,
		"[ff02::1]:1":               ReasonMulticast,
		"0.0.0.0:1":                 ReasonUnspecified,
		"0.1.2.3:1":                 ReasonUnspecified,
		"[::]:1":                    ReasonUnspecified,
		"169.254.169.254:80":        ReasonMetadata,
		"[fd00:ec2::254]:80":        ReasonMetadata, // inside the allowed fd12::/16? no: fd00::/16
		"100.100.100.200:80":        ReasonMetadata,
		"240.0.0.1:1":               ReasonReserved,
		"198.18.0.1:1":              ReasonReserved,
		"[fec0::1]:1":               ReasonReserved,
		"[64:ff9b::a00:1]:1":        ReasonPrivate,  // NAT64 of 10.0.0.1
		"[64:ff9b::7f00:1]:1":       ReasonLoopback, // NAT64 of 127.0.0.1
		"[2002:a9fe:a9fe::]:80":     ReasonMetadata, // 6to4 of 169.254.169.254
		"203.0.113.5:8000":          ReasonOwnAddress,
		"198.51.100.7:3478":         ReasonOwnAddress, // unspecified own address, on a host IP
		"127.0.0.1:3478":            ReasonLoopback,
		"[::ffff:203.0.113.5]:8000": ReasonOwnAddress,
		// Allowed ranges open what they cover, and only that.
		"10.1.2.3:1":           "",
		"10.2.0.1:1":           ReasonPrivate,
		"192.168.7.9:1":        "",
		"192.168.8.1:1":        ReasonPrivate,
		"[fd12::5]:1":          "",
		"[64:ff9b::a01:203]:1": "", // NAT64 of the allowed 10.1.2.3
	}
	for s, want := range cases {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got := p.checkAddr(ap); got != want {
			t.Errorf("%s: %q, want %q", s, got, want)
		}
	}
}

// TestPolicyAllowedStillRefuses checks that an allow-everything list does
// not open the addresses that are always refused.
func TestPolicyAllowedStillRefuses(t *testing.T) {
	allow, err := ParseAllowedPeers([]string{"0.0.0.0/0", "::/0"})
	if err != nil {
		t.Fatal(err)
	}
	p := newPolicy(allow, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8000")}, nil)
	for s, want := range map[string]Reason{
		"127.0.0.1:1":        "",
		"10.0.0.1:1":         "",
		"169.254.169.254:80": ReasonMetadata,
		"[fd00:ec2::254]:80": ReasonMetadata,
		"224.0.0.1:1":        ReasonMulticast,
		"0.0.0.0:1":          ReasonUnspecified,
		"127.0.0.1:8000":     ReasonOwnAddress,
	} {
		if got := p.checkAddr(netip.MustParseAddrPort(s)); got != want {
			t.Errorf("%s: %q, want %q", s, got, want)
		}
	}
}

func TestParseAllowedPeers(t *testing.T) {
	got, err := ParseAllowedPeers([]string{" 127.0.0.0/8", "10.0.0.5", "::1", "10.1.2.3/16", "::ffff:10.0.0.0/104"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.0/8", "10.0.0.5/32", "::1/128", "10.1.0.0/16", "10.0.0.0/8"}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d: %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "fe80::1%eth0", "1.2.3.4/"} {
		if _, err := ParseAllowedPeers([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseAllowedPeers(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8", "::1", "::ffff:10.0.0.0/104", "fe80::/10", "x", ""} {
		f.Add(s)
	}
	p := newPolicy(nil, nil, nil)
	f.Fuzz(func(t *testing.T, s string) {
		prefixes, err := ParseAllowedPeers([]string{s})
		if err != nil {
			return
		}
		for _, pr := range prefixes {
			if !pr.IsValid() || pr.Addr().Is4In6() || pr != pr.Masked() {
				t.Fatalf("%q gave %s", s, pr)
			}
			_ = p.checkIP(pr.Addr()) // must not panic
		}
	})
}

func TestParsePortRange(t *testing.T) {
	for s, want := range map[string][2]uint16{"49152-65535": {49152, 65535}, " 3000 - 3000 ": {3000, 3000}, "1-2": {1, 2}} {
		lo, hi, err := ParsePortRange(s)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("%q: %d %d %v", s, lo, hi, err)
		}
	}
	for _, bad := range []string{"", "5", "0-10", "10-5", "1-65536", "a-b", "-5", "5-"} {
		if _, _, err := ParsePortRange(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
