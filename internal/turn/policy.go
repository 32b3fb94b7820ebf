package turn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Reason says why a peer address is refused; it is also the reason label
// of the refusal metrics.
type Reason string

// The reasons a peer is refused. The first group is refused even inside
// turn_allowed_peers: no deployment needs to relay there, and an allow-all
// range such as 0.0.0.0/0 must not open them.
const (
	// ReasonUnspecified: 0.0.0.0/8 or ::, which the kernel treats as this
	// host.
	ReasonUnspecified Reason = "unspecified"
	// ReasonMulticast: a multicast or the limited broadcast address.
	ReasonMulticast Reason = "multicast"
	// ReasonMetadata: a cloud provider's instance metadata service.
	ReasonMetadata Reason = "metadata"
	// ReasonOwnAddress: one of Switchboard's own listening addresses (its
	// HTTP port, the TURN ports themselves).
	ReasonOwnAddress Reason = "own_address"

	// ReasonLoopback: 127.0.0.0/8 or ::1.
	ReasonLoopback Reason = "loopback"
	// ReasonPrivate: RFC 1918 (10/8, 172.16/12, 192.168/16) or unique local
	// IPv6 (fc00::/7).
	ReasonPrivate Reason = "private"
	// ReasonLinkLocal: 169.254/16 or fe80::/10.
	ReasonLinkLocal Reason = "link_local"
	// ReasonCGNAT: shared address space 100.64/10 (RFC 6598).
	ReasonCGNAT Reason = "cgnat"
	// ReasonReserved: other special-purpose ranges no public peer uses
	// (192.0.0.0/24, 198.18/15, 240/4, fec0::/10, 100::/64, 64:ff9b:1::/48).
	ReasonReserved Reason = "reserved"
)

// metadataAddrs are the instance metadata endpoints of the common clouds:
// AWS, GCP, Azure and others (169.254.169.254, also fd00:ec2::254 on AWS),
// AWS ECS task metadata, Alibaba and Oracle.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("169.254.170.2"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
	netip.MustParseAddr("192.0.0.192"),
}

// denied are the ranges refused unless turn_allowed_peers covers them,
// most specific reason first.
var denied = []struct {
	prefix netip.Prefix
	reason Reason
}{
	{netip.MustParsePrefix("127.0.0.0/8"), ReasonLoopback},
	{netip.MustParsePrefix("::1/128"), ReasonLoopback},
	{netip.MustParsePrefix("10.0.0.0/8"), ReasonPrivate},
	{netip.MustParsePrefix("172.16.0.0/12"), ReasonPrivate},
	{netip.MustParsePrefix("192.168.0.0/16"), ReasonPrivate},
	{netip.MustParsePrefix("fc00::/7"), ReasonPrivate},
	{netip.MustParsePrefix("169.254.0.0/16"), ReasonLinkLocal},
	{netip.MustParsePrefix("fe80::/10"), ReasonLinkLocal},
	{netip.MustParsePrefix("100.64.0.0/10"), ReasonCGNAT},
	{netip.MustParsePrefix("192.0.0.0/24"), ReasonReserved},
	{netip.MustParsePrefix("198.18.0.0/15"), ReasonReserved},
	{netip.MustParsePrefix("240.0.0.0/4"), ReasonReserved},
	{netip.MustParsePrefix("fec0::/10"), ReasonReserved},
	{netip.MustParsePrefix("100::/64"), ReasonReserved},
	{netip.MustParsePrefix("64:ff9b:1::/48"), ReasonReserved},
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	broadcast   = netip.MustParseAddr("255.255.255.255")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// policy decides which peers an allocation may relay to. It is immutable
// after newPolicy and safe for concurrent use.
type policy struct {
	allowed []netip.Prefix
	// own are Switchboard's own listening addresses with a concrete IP.
	own map[netip.AddrPort]bool
	// ownPorts are the ports of own addresses bound to every interface
	// (0.0.0.0:8000, [::]:8000): refused on any IP in hostIPs.
	ownPorts map[uint16]bool
	hostIPs  map[netip.Addr]bool
}

// newPolicy builds a policy. own lists Switchboard's listening addresses;
// hostIPs are the IPs an own address with an unspecified IP is reachable
// at (the host's interface addresses and the relay IP).
func newPolicy(allowed []netip.Prefix, own []netip.AddrPort, hostIPs []netip.Addr) *policy {
	p := &policy{allowed: allowed, own: map[netip.AddrPort]bool{}, ownPorts: map[uint16]bool{}, hostIPs: map[netip.Addr]bool{}}
	for _, a := range own {
		ip := a.Addr().Unmap()
		if ip.IsUnspecified() {
			p.ownPorts[a.Port()] = true
			continue
		}
		p.own[netip.AddrPortFrom(ip, a.Port())] = true
	}
	for _, ip := range hostIPs {
		p.hostIPs[ip.Unmap()] = true
	}
	return p
}

// checkIP returns why ip may not be a peer, or "" when it may. It is the
// test of CreatePermission, ChannelBind and Connect, which name an IP only.
func (p *policy) checkIP(ip netip.Addr) Reason {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return ReasonUnspecified
	}
	if r := p.checkOne(ip); r != "" {
		return r
	}
	// IPv6 forms that carry an IPv4 address a translator would reach.
	if ip.Is6() && (nat64.Contains(ip) || sixToFour.Contains(ip)) {
		b := ip.As16()
		var v4 netip.Addr
		if nat64.Contains(ip) {
			v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		} else {
			v4 = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
		}
		if r := p.checkOne(v4); r != "" {
			return r
		}
	}
	return ""
}

func (p *policy) checkOne(ip netip.Addr) Reason {
	switch {
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		return ReasonUnspecified
	case ip.IsMulticast() || ip == broadcast:
		return ReasonMulticast
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return ReasonMetadata
		}
	}
	for _, d := range denied {
		if d.prefix.Contains(ip) {
			if p.isAllowed(ip) {
				return ""
			}
			return d.reason
		}
	}
	return ""
}

func (p *policy) isAllowed(ip netip.Addr) bool {
	for _, a := range p.allowed {
		if a.Contains(ip) {
			return true
		}
	}
	return false
}

// checkOwn returns ReasonOwnAddress when addr is one of Switchboard's own
// listening addresses, else "". The relay sockets call it for every
// datagram they send, since permissions name IPs and not ports.
func (p *policy) checkOwn(addr netip.AddrPort) Reason {
	ip := addr.Addr().Unmap().WithZone("")
	if p.own[netip.AddrPortFrom(ip, addr.Port())] {
		return ReasonOwnAddress
	}
	if p.ownPorts[addr.Port()] && (p.hostIPs[ip] || ip.IsLoopback()) {
		return ReasonOwnAddress
	}
	return ""
}

// checkAddr is checkIP and checkOwn together, for a full peer address.
func (p *policy) checkAddr(addr netip.AddrPort) Reason {
	if r := p.checkIP(addr.Addr()); r != "" {
		return r
	}
	return p.checkOwn(addr)
}

// ParseAllowedPeers parses turn_allowed_peers: IP addresses or CIDR
// prefixes. IPv4-mapped IPv6 forms are stored as IPv4.
func ParseAllowedPeers(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		var err error
		if strings.Contains(s, "/") {
			p, err = netip.ParsePrefix(s)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(s)
			switch {
			case err == nil && a.Zone() != "":
				err = errors.New("an IPv6 zone is not allowed")
			case err == nil:
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: not an IP address or CIDR prefix: %w", s, err))
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("turn: allowed peers: %w", err)
	}
	return out, nil
}

// addrPortOf converts a net.Addr of the UDP or TCP kind to a netip.AddrPort.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), true
	case *net.TCPAddr:
		return a.AddrPort(), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// ParsePortRange parses turn_relay_ports, "min-max" (inclusive, 1 to
// 65535).
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("turn: port range %q is not min-max", s)
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || l == 0 || h < l {
		return 0, 0, fmt.Errorf("turn: port range %q is not min-max with 1 <= min <= max <= 65535", s)
	}
	return uint16(l), uint16(h), nil
}
