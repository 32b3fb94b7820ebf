package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// StreamStats are the live streams' numbers, read at each scrape.
type StreamStats struct {
	// Streams is the number of live streams on this node.
	Streams int
	// Viewers counts viewers by protocol (hls, whep).
	Viewers map[string]int
	// UnitsReceived and BytesReceived count what publishers wrote;
	// UnitsDropped counts the units readers lost by falling behind.
	UnitsReceived, BytesReceived, UnitsDropped uint64
}

// streamCollector exports StreamStats.
type streamCollector struct {
	stats                          func() StreamStats
	streams, viewers, units, bytes *prometheus.Desc
	dropped                        *prometheus.Desc
}

// NewStreamCollector returns the collector of the live stream metrics
// (switchboard_streams, switchboard_stream_viewers{protocol},
// switchboard_stream_units_received_total,
// switchboard_stream_bytes_received_total,
// switchboard_stream_units_dropped_total), read from stats at each scrape
// so that the media path pays nothing for them. Register it beside New's.
func NewStreamCollector(stats func() StreamStats) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &streamCollector{
		stats:   stats,
		streams: d("streams", "Live streams on this node."),
		viewers: d("stream_viewers", "Viewers of this node's live streams, by protocol.", "protocol"),
		units:   d("stream_units_received_total", "Access units publishers wrote to this node's streams."),
		bytes:   d("stream_bytes_received_total", "Payload bytes publishers wrote to this node's streams."),
		dropped: d("stream_units_dropped_total", "Access units stream readers (outputs, viewers) lost by falling behind."),
	}
}

// Describe implements prometheus.Collector.
func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.streams, c.viewers, c.units, c.bytes, c.dropped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(c.streams, prometheus.GaugeValue, float64(s.Streams))
	protocols := make([]string, 0, len(s.Viewers))
	for p := range s.Viewers {
		protocols = append(protocols, p)
	}
	sort.Strings(protocols)
	for _, p := range protocols {
		ch <- prometheus.MustNewConstMetric(c.viewers, prometheus.GaugeValue, float64(s.Viewers[p]), p)
	}
	ch <- prometheus.MustNewConstMetric(c.units, prometheus.CounterValue, float64(s.UnitsReceived))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.BytesReceived))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.UnitsDropped))
}
