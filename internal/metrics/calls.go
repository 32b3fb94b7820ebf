package metrics

import "github.com/prometheus/client_golang/prometheus"

// CallStats are the call service's numbers, read at each scrape.
type CallStats struct {
	Rooms, Participants, Tracks, Subscriptions        int
	ForwardedPackets, KeyframeRequests, LayerSwitches uint64
}

// callCollector exports CallStats.
type callCollector struct {
	stats func() CallStats
	descs [7]*prometheus.Desc
}

// NewCallCollector returns the collector of the call metrics
// (switchboard_rooms, switchboard_room_participants,
// switchboard_room_tracks, switchboard_room_subscriptions,
// switchboard_sfu_forwarded_packets_total,
// switchboard_sfu_keyframe_requests_total,
// switchboard_sfu_layer_switches_total), read from stats at each scrape so
// that forwarding pays nothing for them. Register it beside New's.
func NewCallCollector(stats func() CallStats) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, nil, nil)
	}
	return &callCollector{stats: stats, descs: [7]*prometheus.Desc{
		d("rooms", "Calls served by this node."),
		d("room_participants", "Participants in the calls of this node."),
		d("room_tracks", "Tracks published in the calls of this node."),
		d("room_subscriptions", "Tracks forwarded to subscribers (one per subscriber and track)."),
		d("sfu_forwarded_packets_total", "RTP packets the SFU wrote to subscribers."),
		d("sfu_keyframe_requests_total", "Keyframe requests (PLI) the SFU sent to publishers."),
		d("sfu_layer_switches_total", "Simulcast layer switches of subscribers."),
	}}
}

// Describe implements prometheus.Collector.
func (c *callCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *callCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	gauges := []int{s.Rooms, s.Participants, s.Tracks, s.Subscriptions}
	for i, v := range gauges {
		ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.GaugeValue, float64(v))
	}
	for i, v := range []uint64{s.ForwardedPackets, s.KeyframeRequests, s.LayerSwitches} {
		ch <- prometheus.MustNewConstMetric(c.descs[len(gauges)+i], prometheus.CounterValue, float64(v))
	}
}
