package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/api"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/stream"
	"github.com/switchboardhq/switchboard/internal/stream/hls"
	"github.com/switchboardhq/switchboard/internal/stream/record"
	"github.com/switchboardhq/switchboard/internal/stream/rtmp"
	"github.com/switchboardhq/switchboard/internal/stream/whip"
	"github.com/switchboardhq/switchboard/internal/turn"
	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
)

// streams is the node's live streaming: the registry, the LL-HLS output
// and the RTMP ingest.
type streams struct {
	cfg      config.Config
	log      *slog.Logger
	registry *stream.Registry
	auth     *stream.Authorizer
	hls      *hls.Server
	rtmp     *rtmp.Server     // nil when rtmp_addr is empty
	record   *record.Recorder // nil when no namespace is recorded
	rtmpLn   net.Listener     // bound by listen
	rtmpDone chan error       // Serve's result
	whip     *whip.Server     // WHIP ingest and WHEP playback
	owners   *streamOwners    // nil on a single node (memory broker)
	node     string           // this node's id (setNode)
	cluster  *hub.Hub         // extends the server API to the cluster (setNode)
}

// newStreams builds the live streaming. Owners is the cluster's presence
// store (nil on a single node), where each stream's node is recorded.
func newStreams(cfg config.Config, apiKeys []string, verifier *auth.Verifier, owners broker.PresenceStore, log *slog.Logger, reg prometheus.Registerer) (*streams, error) {
	secret := []byte(cfg.StreamKeySecret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	nss := cfg.StreamNamespacesOrDefault()
	names := make([]string, len(nss))
	for i, ns := range nss {
		names[i] = ns.Name
	}
	a, err := stream.NewAuthorizer(stream.AuthOptions{APIKeys: apiKeys, KeySecret: secret, Verifier: verifier, Namespaces: nss})
	if err != nil {
		return nil, fmt.Errorf("server: streams: %w", err)
	}
	st := &streams{cfg: cfg, log: log, auth: a}
	ropts := stream.Options{Namespaces: names, Logger: log}
	if owners != nil {
		st.owners = newStreamOwners(owners, cfg.StreamBaseURL(), log)
		ropts.Owners = st.owners
		if cfg.StreamBaseURL() == "" {
			log.Warn("node_http_url and node_url are empty: viewers of this node's streams who reach another node get 503 instead of a redirect here")
		}
	}
	st.registry = stream.NewRegistry(ropts)
	st.hls = hls.New(hls.Options{
		Registry: st.registry, Authorizer: a, Logger: log,
		PartDuration: cfg.HLSPartDuration, SegmentDuration: cfg.HLSSegmentDuration,
	})
	st.whip = whip.New(whip.Options{Registry: st.registry, Authorizer: a, Logger: log})
	var recorded []string
	for _, ns := range nss {
		if ns.Record {
			recorded = append(recorded, ns.Name)
		}
	}
	if len(recorded) > 0 {
		st.record, err = record.New(record.Options{
			Registry: st.registry, Dir: cfg.StreamRecordDir, Namespaces: recorded, Logger: log,
			SegmentDuration: cfg.StreamRecordSegment, Retention: cfg.StreamRecordRetention,
		})
		if err != nil {
			st.hls.Close()
			return nil, fmt.Errorf("server: stream_record_dir: %w", err)
		}
	}
	reg.MustRegister(metrics.NewStreamCollector(func() metrics.StreamStats {
		s := st.registry.Stats()
		return metrics.StreamStats{Streams: s.Streams, Viewers: s.Viewers, UnitsReceived: s.UnitsIn, BytesReceived: s.BytesIn, UnitsDropped: s.Dropped}
	}))
	if cfg.RTMPAddr != "" {
		st.rtmp = rtmp.New(rtmp.Options{Registry: st.registry, Authorizer: a, Logger: log, HandshakeTimeout: cfg.HandshakeTimeout})
	}
	return st, nil
}

// RTMPAddr returns the RTMP ingest's address (after Listen), "" when off.
func (s *Server) RTMPAddr() string { return s.streams.rtmpAddr() }

// streamsAPI is the live streams for the server API, nil when off.
func (s *Server) streamsAPI() api.Streams {
	if s.streams == nil {
		return nil
	}
	return s.streams
}

// streamAdmin is the live streams for the hub's cluster-wide server API,
// nil when off.
func (s *Server) streamAdmin() hub.StreamAdmin {
	if s.streams == nil {
		return nil
	}
	return s.streams
}

// The methods below are no-ops on a nil *streams (streams is off).

// mount adds the streams' HTTP routes.
func (st *streams) mount(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	if st == nil {
		return
	}
	mux.Handle("/hls/", wrap(st.redirect(st.hls)))
	mux.Handle("/whip/", wrap(st.redirect(st.whip)))
	mux.Handle("/whep/", wrap(st.redirect(st.whip)))
}

// useCalls gives WHIP and WHEP the SFU's connections (without it they
// answer 503), and registers their metrics.
func (st *streams) useCalls(s *sfu.SFU, reg prometheus.Registerer) {
	if st == nil {
		return
	}
	if s != nil {
		st.whip = whip.New(whip.Options{Registry: st.registry, Authorizer: st.auth, Connections: s, GatherTimeout: s.GatherTimeout(), Logger: st.log})
	}
	w := st.whip
	reg.MustRegister(metrics.NewWHIPCollector(func() metrics.WHIPStats {
		ws := w.Stats()
		return metrics.WHIPStats{WHIPSessions: ws.PublishSessions, WHEPSessions: ws.ViewSessions, ForwardedPackets: ws.ForwardedPackets}
	}))
}

// useTURN announces the TURN server to WHIP and WHEP clients (Link
// headers), with fresh credentials for each answer.
func (st *streams) useTURN(t *turn.Server) {
	if st == nil {
		return
	}
	st.whip.SetICEServers(func(host string) ([]whip.ICEServer, error) {
		list, _, err := t.ICEServers("stream", host)
		if err != nil {
			return nil, fmt.Errorf("server: turn credentials: %w", err)
		}
		out := make([]whip.ICEServer, len(list))
		for i, s := range list {
			out[i] = whip.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential}
		}
		return out, nil
	})
}

// listen binds rtmp_addr.
func (st *streams) listen() error {
	if st == nil || st.rtmp == nil {
		return nil
	}
	ln, err := net.Listen("tcp", st.cfg.RTMPAddr)
	if err != nil {
		return fmt.Errorf("server: rtmp_addr: %w", err)
	}
	st.rtmpLn = ln
	return nil
}

// serve starts the RTMP ingest on the bound listener, and the refresh of
// the stream-owner records.
func (st *streams) serve() {
	if st == nil {
		return
	}
	if st.owners != nil {
		st.owners.start()
	}
	if st.rtmpLn == nil {
		return
	}
	st.rtmpDone = make(chan error, 1)
	go func() { st.rtmpDone <- st.rtmp.Serve(st.rtmpLn) }()
}

// rtmpAddr returns the RTMP ingest's bound address, "" when off.
func (st *streams) rtmpAddr() string {
	if st == nil || st.rtmpLn == nil {
		return ""
	}
	return st.rtmpLn.Addr().String()
}

// close ends every stream and stops the ingest and the output.
func (st *streams) close(ctx context.Context) error {
	if st == nil {
		return nil
	}
	var errs []error
	if st.rtmp != nil {
		if st.rtmpLn != nil && st.rtmpDone == nil {
			_ = st.rtmpLn.Close() // bound but never served
		}
		if err := st.rtmp.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := st.whip.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	st.registry.Close()
	if st.owners != nil {
		st.owners.close()
	}
	st.hls.Close()
	if st.record != nil {
		st.record.Close()
	}
	return errors.Join(errs...)
}

// MintKey implements api.Streams.
func (st *streams) MintKey(action, path string, ttl time.Duration) (string, time.Time, error) {
	if err := st.registry.CheckPath(path); err != nil {
		return "", time.Time{}, err
	}
	return st.auth.MintKey(stream.Action(action), path, ttl)
}
