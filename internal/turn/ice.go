package turn

import (
	"net"
	"strconv"
	"time"
)

// ICEServer is one entry of a WebRTC client's iceServers list, in the
// shape of the browser's RTCIceServer dictionary.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// ICEServers returns the iceServers a client of user should use: this
// server's STUN URL, and its TURN URLs (UDP, TCP, and TLS when
// configured) with a freshly minted credential, which expires at the
// returned time. host is the host name the client reached Switchboard by
// (the request's Host, with or without a port); Config.Host overrides it,
// and the relay IP stands in when both are empty.
func (s *Server) ICEServers(user, host string) ([]ICEServer, time.Time, error) {
	cred, err := s.Mint(user, 0)
	if err != nil {
		return nil, time.Time{}, err
	}
	h := s.cfg.Host
	if h == "" {
		h = hostOnly(host)
	}
	if h == "" {
		h = s.relayIP.String()
	}
	hp := net.JoinHostPort(h, strconv.Itoa(s.udpAddr.Port))
	turnURLs := []string{
		"turn:" + hp + "?transport=udp",
		"turn:" + net.JoinHostPort(h, strconv.Itoa(s.tcpAddr.Port)) + "?transport=tcp",
	}
	if s.tlsAddr != nil {
		turnURLs = append(turnURLs, "turns:"+net.JoinHostPort(h, strconv.Itoa(s.tlsAddr.Port))+"?transport=tcp")
	}
	return []ICEServer{
		{URLs: []string{"stun:" + hp}},
		{URLs: turnURLs, Username: cred.Username, Credential: cred.Password},
	}, cred.Expires, nil
}
