package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// validateStreams checks the live-stream keys.
func (c Config) validateStreams() []error {
	var errs []error
	if c.RTMPAddr != "" {
		if _, port, err := net.SplitHostPort(c.RTMPAddr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("rtmp_addr: %q is not host:port", c.RTMPAddr))
		}
		if !c.Streams {
			errs = append(errs, errors.New("rtmp_addr: needs streams"))
		}
	}
	if c.StreamKeySecret != "" && len(c.StreamKeySecret) < 16 {
		errs = append(errs, errors.New("stream_key_secret: must be at least 16 bytes"))
	}
	if c.HLSPartDuration < 50*time.Millisecond || c.HLSPartDuration > 2*time.Second {
		errs = append(errs, fmt.Errorf("hls_part_duration: must be 50ms to 2s, got %s", c.HLSPartDuration))
	}
	if c.HLSSegmentDuration < c.HLSPartDuration || c.HLSSegmentDuration > 30*time.Second {
		errs = append(errs, fmt.Errorf("hls_segment_duration: must be hls_part_duration (%s) to 30s, got %s", c.HLSPartDuration, c.HLSSegmentDuration))
	}
	if c.StreamRecordSegment < time.Second || c.StreamRecordSegment > time.Hour {
		errs = append(errs, fmt.Errorf("stream_record_segment_duration: must be 1s to 1h, got %s", c.StreamRecordSegment))
	}
	if c.StreamRecordRetention < 0 {
		errs = append(errs, fmt.Errorf("stream_record_retention: must not be negative, got %s", c.StreamRecordRetention))
	}
	if c.NodeHTTPURL != "" {
		if u, err := url.Parse(c.NodeHTTPURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("node_http_url: %q is not an http:// or https:// base URL (scheme and host, an optional path, no query)", c.NodeHTTPURL))
		}
	}
	seen := map[string]bool{}
	for _, ns := range c.StreamNamespaces {
		if err := ns.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("stream_namespaces: %w", err))
		}
		if seen[ns.Name] {
			errs = append(errs, fmt.Errorf("stream_namespaces: %q is defined twice", ns.Name))
		}
		seen[ns.Name] = true
		if ns.Record && c.StreamRecordDir == "" {
			errs = append(errs, fmt.Errorf("stream_namespaces: %q has record: true but stream_record_dir is empty", ns.Name))
		}
	}
	return errs
}

// StreamNamespacesOrDefault returns the stream namespaces, or the default
// one ("live", open to readers) when none is configured.
func (c Config) StreamNamespacesOrDefault() []stream.Namespace {
	if len(c.StreamNamespaces) == 0 {
		return []stream.Namespace{{Name: "live", Read: stream.ReadAnyone}}
	}
	return c.StreamNamespaces
}

// StreamBaseURL returns the HTTP base URL (no trailing '/') where other
// nodes redirect the viewers of a stream this node publishes:
// node_http_url, else node_url with ws turned into http and wss into
// https and its path dropped, else "" (viewers on other nodes are then
// answered 503).
func (c Config) StreamBaseURL() string {
	if c.NodeHTTPURL != "" {
		return strings.TrimRight(c.NodeHTTPURL, "/")
	}
	u, err := url.Parse(c.NodeURL)
	if err != nil || u.Host == "" {
		return ""
	}
	switch u.Scheme {
	case "ws", "http":
		return "http://" + u.Host
	case "wss", "https":
		return "https://" + u.Host
	}
	return ""
}
