// Package sfu is Switchboard's selective forwarding unit: rooms of
// participants, each with a publishing and a subscribing PeerConnection,
// and the forwarding of every published track to every subscriber with
// header rewriting, NACK, keyframe requests and simulcast layer choice.
//
// The package knows nothing of the hub: it talks to a participant's client
// through the Signaler it is given at Join, and the hub reaches it through
// an interface of its own that the server wires to an *SFU.
package sfu

import (
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/pion/transport/v5"
)

// Config configures an SFU. Zero fields take the defaults documented on
// them.
type Config struct {
	// UDPConn, when set, carries ICE over UDP for every peer on one port
	// (webrtc_udp_port). When nil each PeerConnection gathers on its own
	// ephemeral ports.
	UDPConn net.PacketConn
	// TCPListener, when set, accepts ICE-TCP (RFC 6544 passive
	// candidates), the fallback for clients whose UDP is blocked.
	TCPListener net.Listener
	// PublicIPs are announced instead of the host addresses (1:1 NAT, as
	// on a cloud VM with a public address mapped to a private one):
	// webrtc_public_ip.
	PublicIPs []string
	// Loopback includes loopback candidates and, when Net is nil, gathers
	// on the "lo" interface only: for tests and loopback-only machines.
	Loopback bool
	// Net replaces the network stack (a pion vnet in tests).
	Net transport.Net
	// VideoCodecs orders the video codecs the SFU accepts from
	// publishers, most preferred first, among "vp8", "vp9", "h264".
	// Default vp8, vp9, h264. A room may ask for another first choice.
	VideoCodecs []string
	// OfferRate and OfferBurst bound the offers, answers and candidates
	// one participant may send, per second. Default 20 per second with a
	// burst of 50.
	OfferRate  float64
	OfferBurst int
	// GatherTimeout bounds how long an offer or answer waits for the
	// server's ICE candidates (they are sent in the SDP, not trickled).
	// Default 2s.
	GatherTimeout time.Duration
	// MaxParticipants bounds a room's participants. Default 50.
	MaxParticipants int
	// SpeakerInterval is how often the active speaker is chosen. Default
	// 500ms.
	SpeakerInterval time.Duration
	// LayerInterval is how often subscribers' layers are re-chosen from
	// their bandwidth estimates. Default 500ms.
	LayerInterval time.Duration
	// InitialBitrate is the bandwidth estimate a subscriber starts with,
	// in bit/s. Default 1,000,000.
	InitialBitrate int
	// DisconnectedTimeout and FailedTimeout are how long a connection
	// that receives nothing is "disconnected", then "failed": a failed
	// connection's participant is removed from its room. Default 5s and
	// 25s (pion's).
	DisconnectedTimeout time.Duration
	FailedTimeout       time.Duration
	// Logger receives the SFU's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if len(c.VideoCodecs) == 0 {
		c.VideoCodecs = []string{"vp8", "vp9", "h264"}
	}
	for i, v := range c.VideoCodecs {
		c.VideoCodecs[i] = strings.ToLower(v)
	}
	if c.OfferRate <= 0 {
		c.OfferRate = 20
	}
	if c.OfferBurst <= 0 {
		c.OfferBurst = 50
	}
	if c.GatherTimeout <= 0 {
		c.GatherTimeout = 2 * time.Second
	}
	if c.MaxParticipants <= 0 {
		c.MaxParticipants = 50
	}
	if c.SpeakerInterval <= 0 {
		c.SpeakerInterval = 500 * time.Millisecond
	}
	if c.LayerInterval <= 0 {
		c.LayerInterval = 500 * time.Millisecond
	}
	if c.InitialBitrate <= 0 {
		c.InitialBitrate = 1_000_000
	}
	if c.DisconnectedTimeout <= 0 {
		c.DisconnectedTimeout = 5 * time.Second
	}
	if c.FailedTimeout <= 0 {
		c.FailedTimeout = 25 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
