package metrics

import "github.com/prometheus/client_golang/prometheus"

// StreamWebRTCStats are the WHIP/WHEP numbers and the viewers of live
// streams, read at each scrape.
type StreamWebRTCStats struct {
	WHIPSessions, WHEPSessions int
	// Viewers counts live-stream viewers by output protocol ("whep",
	// "hls").
	Viewers map[string]int
	// ForwardedPackets counts RTP packets written to WHEP viewers.
	ForwardedPackets uint64
}

type streamWebRTCCollector struct {
	stats                          func() StreamWebRTCStats
	whip, whep, viewers, forwarded *prometheus.Desc
}

// NewStreamWebRTCCollector returns the collector of
// switchboard_whip_sessions, switchboard_whep_sessions,
// switchboard_stream_viewers{protocol} and
// switchboard_whep_forwarded_packets_total, read from stats at each
// scrape. Register it beside New's.
func NewStreamWebRTCCollector(stats func() StreamWebRTCStats) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &streamWebRTCCollector{
		stats:     stats,
		whip:      d("whip_sessions", "Live WHIP (WebRTC ingest) sessions."),
		whep:      d("whep_sessions", "Live WHEP (WebRTC playback) sessions."),
		viewers:   d("stream_viewers", "Viewers of live streams by output protocol.", "protocol"),
		forwarded: d("whep_forwarded_packets_total", "RTP packets written to WHEP viewers."),
	}
}

// Describe implements prometheus.Collector.
func (c *streamWebRTCCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.whip
	ch <- c.whep
	ch <- c.viewers
	ch <- c.forwarded
}

// Collect implements prometheus.Collector.
func (c *streamWebRTCCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.whip, prometheus.GaugeValue, float64(s.WHIPSessions))
	ch <- prometheus.MustNewConstMetric(c.whep, prometheus.GaugeValue, float64(s.WHEPSessions))
	for p, n := range s.Viewers {
		ch <- prometheus.MustNewConstMetric(c.viewers, prometheus.GaugeValue, float64(n), p)
	}
	ch <- prometheus.MustNewConstMetric(c.forwarded, prometheus.CounterValue, float64(s.ForwardedPackets))
}
