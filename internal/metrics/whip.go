package metrics

import "github.com/prometheus/client_golang/prometheus"

// WHIPStats are the WHIP and WHEP numbers, read at each scrape. (Viewers
// by protocol, WHEP's included, are in StreamStats.)
type WHIPStats struct {
	WHIPSessions, WHEPSessions int
	// ForwardedPackets counts RTP packets written to WHEP viewers.
	ForwardedPackets uint64
}

type whipCollector struct {
	stats                 func() WHIPStats
	whip, whep, forwarded *prometheus.Desc
}

// NewWHIPCollector returns the collector of switchboard_whip_sessions,
// switchboard_whep_sessions and switchboard_whep_forwarded_packets_total,
// read from stats at each scrape. Register it beside New's.
func NewWHIPCollector(stats func() WHIPStats) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, nil, nil)
	}
	return &whipCollector{
		stats:     stats,
		whip:      d("whip_sessions", "Live WHIP (WebRTC ingest) sessions."),
		whep:      d("whep_sessions", "Live WHEP (WebRTC playback) sessions."),
		forwarded: d("whep_forwarded_packets_total", "RTP packets written to WHEP viewers (one per packet and viewer)."),
	}
}

// Describe implements prometheus.Collector.
func (c *whipCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.whip
	ch <- c.whep
	ch <- c.forwarded
}

// Collect implements prometheus.Collector.
func (c *whipCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.whip, prometheus.GaugeValue, float64(s.WHIPSessions))
	ch <- prometheus.MustNewConstMetric(c.whep, prometheus.GaugeValue, float64(s.WHEPSessions))
	ch <- prometheus.MustNewConstMetric(c.forwarded, prometheus.CounterValue, float64(s.ForwardedPackets))
}
