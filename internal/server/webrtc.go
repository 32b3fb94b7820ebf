package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/turn"
	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
	"github.com/switchboardhq/switchboard/internal/webrtc/signal"
)

// calls is the node's call service: the SFU, its signaling, and the media
// sockets they share.
type calls struct {
	sfu    *sfu.SFU
	signal *signal.Service
	udp    net.PacketConn // nil without webrtc_udp_port
	tcp    net.Listener   // nil without webrtc_tcp_port
}

// newCalls builds the call service from the webrtc_* keys. Owners is the
// cluster's presence store (nil on a single node), where each room's
// serving node is recorded.
func newCalls(cfg config.Config, owners broker.PresenceStore, log *slog.Logger) (_ *calls, err error) {
	// c, not the result: a failure returns nil, and what was opened so far
	// must still be closed.
	c := &calls{}
	defer func() {
		if err != nil {
			_ = c.close(context.Background())
		}
	}()
	host := ""
	if cfg.WebRTCLoopback {
		host = "127.0.0.1"
	}
	if cfg.WebRTCUDPPort > 0 {
		if c.udp, err = net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(cfg.WebRTCUDPPort))); err != nil {
			return nil, fmt.Errorf("server: webrtc_udp_port: %w", err)
		}
	}
	if cfg.WebRTCTCPPort > 0 {
		if c.tcp, err = net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(cfg.WebRTCTCPPort))); err != nil {
			return nil, fmt.Errorf("server: webrtc_tcp_port: %w", err)
		}
	}
	scfg := sfu.Config{
		PublicIPs:   cfg.WebRTCPublicIP,
		Loopback:    cfg.WebRTCLoopback,
		VideoCodecs: cfg.WebRTCCodecs,
		Logger:      log,
	}
	if c.udp != nil {
		scfg.UDPConn = c.udp
	}
	if c.tcp != nil {
		scfg.TCPListener = c.tcp
	}
	if c.sfu, err = sfu.New(scfg); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	// The join reply's ice_servers come from the built-in TURN server
	// (useTURN, once Listen started it); none without it.
	c.signal = signal.New(signal.Config{SFU: c.sfu, Owners: owners, NodeURL: cfg.NodeURL, Logger: log})
	return c, nil
}

// close ends every call and releases the media sockets.
func (c *calls) close(ctx context.Context) error {
	var errs []error
	if c.signal != nil {
		c.signal.Close(ctx)
	}
	if c.sfu != nil {
		errs = append(errs, c.sfu.Close())
	}
	// The SFU's ICE muxes close the sockets they were given; these closes
	// are for a service that failed before its SFU existed.
	if c.udp != nil {
		if err := c.udp.Close(); !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if c.tcp != nil {
		if err := c.tcp.Close(); !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// useTURN gives participants the TURN server's STUN and TURN URLs with
// fresh credentials in their join reply. The URLs name turn_host, or else
// the relay address: the hub does not keep the host name each client
// used.
func (c *calls) useTURN(t *turn.Server) {
	c.signal.SetICEServers(func(user string) ([]signal.ICEServer, time.Time, error) {
		list, exp, err := t.ICEServers(user, "")
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("server: turn credentials: %w", err)
		}
		out := make([]signal.ICEServer, len(list))
		for i, s := range list {
			out[i] = signal.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
		}
		return out, exp, nil
	})
}
