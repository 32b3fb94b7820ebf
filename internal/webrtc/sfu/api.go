package sfu

import (
	"fmt"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Codec payload types the SFU offers; RTX follows each video codec.
var videoCodecs = map[string]webrtc.RTPCodecParameters{
	"vp8": {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
	"vp9": {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}, PayloadType: 98},
	"h264": {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 102},
}

var opusCodec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
	PayloadType:        111,
}

// audioLevelURI is the RTP header extension carrying a sender's audio
// level (RFC 6464), read for the active speaker.
const audioLevelURI = sdp.AudioLevelURI

// mediaEngine registers Opus and the video codecs in order, with NACK,
// PLI, FIR and transport-cc feedback and RTX.
func mediaEngine(order []string) (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(opusCodec, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("sfu: register opus: %w", err)
	}
	fb := []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: webrtc.TypeRTCPFBTransportCC}}
	for _, name := range order {
		c, ok := videoCodecs[name]
		if !ok {
			return nil, fmt.Errorf("sfu: unknown video codec %q (want vp8, vp9 or h264)", name)
		}
		c.RTCPFeedback = fb
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("sfu: register %s: %w", name, err)
		}
		rtx := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.PayloadType)},
			PayloadType:        c.PayloadType + 1,
		}
		if err := m.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("sfu: register rtx: %w", err)
		}
	}
	for _, ext := range []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.SDESMidURI, webrtc.RTPCodecTypeAudio},
		{sdp.SDESMidURI, webrtc.RTPCodecTypeVideo},
		{audioLevelURI, webrtc.RTPCodecTypeAudio},
	} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: ext.uri}, ext.kind); err != nil {
			return nil, fmt.Errorf("sfu: register %s: %w", ext.uri, err)
		}
	}
	return m, nil
}

// newPublishAPI builds the API of publishing PeerConnections: NACK
// generation towards the publisher, receiver reports, transport-cc
// feedback (so the browser's own estimate can grow to send every
// simulcast layer), and the simulcast header extensions.
func newPublishAPI(cfg *Config, mx muxes) (*webrtc.API, error) {
	m, err := mediaEngine(cfg.VideoCodecs)
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return nil, fmt.Errorf("sfu: nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("sfu: rtcp reports: %w", err)
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, fmt.Errorf("sfu: simulcast extensions: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, fmt.Errorf("sfu: twcc: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(settingEngine(cfg, mx))), nil
}

// newSubscribeAPI builds the API of subscribing PeerConnections: the
// NACK responder (retransmissions from its buffer of sent packets), sender
// reports, transport-wide sequence numbers and a send-side bandwidth
// estimator (Google congestion control) per PeerConnection, announced to
// onEstimator.
func newSubscribeAPI(cfg *Config, mx muxes, onEstimator cc.NewPeerConnectionCallback) (*webrtc.API, error) {
	m, err := mediaEngine(cfg.VideoCodecs)
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return nil, fmt.Errorf("sfu: nack: %w", err)
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("sfu: rtcp reports: %w", err)
	}
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(cfg.InitialBitrate), gcc.SendSideBWEPacer(gcc.NewNoOpPacer()))
	})
	if err != nil {
		return nil, fmt.Errorf("sfu: congestion control: %w", err)
	}
	ccf.OnNewPeerConnection(onEstimator)
	ir.Add(ccf)
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return nil, fmt.Errorf("sfu: twcc header: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(settingEngine(cfg, mx))), nil
}

// muxes are the ICE muxes on the configured sockets, made once per SFU:
// two muxes reading one socket would each drop the other's packets.
type muxes struct {
	udp ice.UDPMux
	tcp ice.TCPMux
}

func newMuxes(cfg *Config) muxes {
	var m muxes
	logs := pionLogs{cfg.Logger.With("component", "pion")}
	if cfg.UDPConn != nil {
		m.udp = webrtc.NewICEUDPMux(logs.NewLogger("udpmux"), cfg.UDPConn)
	}
	if cfg.TCPListener != nil {
		m.tcp = webrtc.NewICETCPMux(logs.NewLogger("tcpmux"), cfg.TCPListener, 64)
	}
	return m
}

func settingEngine(cfg *Config, mx muxes) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.LoggerFactory = pionLogs{cfg.Logger.With("component", "pion")}
	// ICE lite: the server only answers connectivity checks and never
	// controls, whichever side offers: a server with reachable host (or
	// NAT 1:1) candidates needs no more, and it keeps no check schedule
	// per connection.
	se.SetLite(true)
	se.SetICETimeouts(cfg.DisconnectedTimeout, cfg.FailedTimeout, 2*time.Second)
	if cfg.Net != nil {
		se.SetNet(cfg.Net)
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	if mx.udp != nil {
		se.SetICEUDPMux(mx.udp)
	}
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if mx.tcp != nil {
		se.SetICETCPMux(mx.tcp)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(types)
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	if cfg.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		if cfg.Net == nil {
			se.SetInterfaceFilter(func(name string) bool { return name == "lo" || strings.HasPrefix(name, "lo0") })
		}
	}
	return se
}
