// Package metrics declares every Prometheus metric Switchboard exports, with
// its name, help and labels, in one place. Other packages receive a *Metrics
// and never register metrics of their own.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "switchboard"

// Metrics holds the collectors. A nil *Metrics is not valid; use New.
type Metrics struct {
	// Connections is the number of open client connections, by transport.
	Connections *prometheus.GaugeVec
	// ConnectionsTotal counts accepted connections, by transport.
	ConnectionsTotal *prometheus.CounterVec
	// Subscriptions is the number of active client subscriptions.
	Subscriptions prometheus.Gauge
	// Channels is the number of channels with at least one local subscriber.
	Channels prometheus.Gauge
	// MessagesSent counts messages written to client sockets.
	MessagesSent prometheus.Counter
	// BytesSent counts payload bytes written to client sockets (without framing).
	BytesSent prometheus.Counter
	// MessagesReceived counts frames received from clients.
	MessagesReceived prometheus.Counter
	// BytesReceived counts payload bytes received from clients.
	BytesReceived prometheus.Counter
	// SocketWrites counts write calls to client sockets; MessagesSent divided
	// by it is the coalescing factor.
	SocketWrites prometheus.Counter
	// DirectWrites counts the socket writes made at once by the goroutine
	// that queued the message (the fan-out, a command) because the
	// connection was idle, without waking a writer goroutine.
	DirectWrites prometheus.Counter
	// DirectWritesActive is 1 while direct writes are allowed (the node
	// sends under 20,000 messages/s), else 0.
	DirectWritesActive prometheus.Gauge
	// Compressed counts WebSocket messages sent or received compressed with
	// permessage-deflate, by direction (sent, received).
	Compressed *prometheus.CounterVec
	// CompressionSaved counts the payload bytes permessage-deflate kept off
	// the wire: uncompressed minus compressed size of each message sent
	// compressed.
	CompressionSaved prometheus.Counter
	// DeltaPublications counts publications queued on delta-compressed
	// subscriptions, by how they went (delta, whole); DeltaSent and
	// DeltaWhole are its two children, resolved once.
	DeltaPublications     *prometheus.CounterVec
	DeltaSent, DeltaWhole prometheus.Counter
	// WriteDelayActive is 1 while write_delay is in force (the writers
	// could not keep up; see hub.Config.WriteDelayMinRate), else 0.
	WriteDelayActive prometheus.Gauge
	// Publications counts publications accepted, by source (api, client, postgres,
	// kafka).
	Publications *prometheus.CounterVec
	// PublicationsDeduplicated counts publishes that repeated an
	// idempotency key within its window and so published nothing, by
	// source (api, client).
	PublicationsDeduplicated *prometheus.CounterVec
	// DeliveryLatency observes the time from a publication reaching this node
	// to its write into a subscriber's socket.
	DeliveryLatency prometheus.Histogram
	// QueueOverflows counts connections closed because their outbound queue
	// overflowed (slow consumers).
	QueueOverflows prometheus.Counter
	// Errors counts error replies sent to clients, by code.
	Errors *prometheus.CounterVec
	// Disconnects counts connections closed by the server, by close code.
	Disconnects *prometheus.CounterVec
	// Recoveries counts subscriptions that asked to recover, by outcome.
	Recoveries *prometheus.CounterVec
	// Resets counts reset pushes: a channel's history was lost (new epoch)
	// while clients were subscribed.
	Resets prometheus.Counter
	// RateLimited counts client commands refused by the rate limit.
	RateLimited prometheus.Counter
	// Dropped counts messages that were meant for a client and never
	// written, by reason (see the Drop constants).
	Dropped *prometheus.CounterVec
	// dropped caches Dropped's counter of each reason.
	dropped map[DropReason]prometheus.Counter
	// APIRequests counts server API calls, by method and status code.
	APIRequests *prometheus.CounterVec
	// TURNAllocations is the number of TURN allocations open on this node.
	TURNAllocations prometheus.Gauge
	// TURNAllocationsRefused counts TURN Allocate requests refused, by
	// reason (see internal/turn).
	TURNAllocationsRefused *prometheus.CounterVec
	// TURNPermissionsRefused counts TURN CreatePermission, ChannelBind and
	// Connect requests, and relayed datagrams, refused by the peer
	// policy, by reason (see internal/turn).
	TURNPermissionsRefused *prometheus.CounterVec
	// ProxyCalls counts calls to the application backend's proxy hooks, by
	// hook (connect, refresh, subscribe, publish, rpc) and result (see
	// the proxy package's Result constants).
	ProxyCalls *prometheus.CounterVec
	// ProxyDuration observes how long each proxy hook call took, by hook,
	// whatever its result.
	ProxyDuration *prometheus.HistogramVec
	// WebhookEmitted counts lifecycle reports written to the webhook queue,
	// by kind (conn, disc, join, leave): from then on their events are
	// delivered even if this node dies.
	WebhookEmitted *prometheus.CounterVec
	// WebhookEmitFailures counts failed writes of reports to the queue
	// (the broker failed): a join or a connection is then refused to the
	// client, a leave or a disconnection is held and written later.
	WebhookEmitFailures prometheus.Counter
	// WebhookHeld is the number of reports this node holds after a failed
	// write, waiting to be written again.
	WebhookHeld prometheus.Gauge
	// WebhookLost counts reports dropped because too many were held; their
	// events come only if the node is later found gone.
	WebhookLost prometheus.Counter
	// WebhookDelivered counts events the webhook endpoint acknowledged
	// (2xx), by type, as sent by this node.
	WebhookDelivered *prometheus.CounterVec
	// WebhookRetries counts webhook requests sent again after a failure.
	WebhookRetries prometheus.Counter
	// WebhookFailures counts failed webhook requests, by reason (status,
	// timeout, network, internal).
	WebhookFailures *prometheus.CounterVec
	// WebhookBatchDuration observes the time from a batch's first attempt
	// to its acknowledgement, retries included.
	WebhookBatchDuration prometheus.Histogram
	// WebhookBacklog is the number of reports waiting in the partitions
	// this node sends.
	WebhookBacklog prometheus.Gauge
	// ConsumerRecords counts the rows and records the async consumers
	// took, by consumer (postgres, kafka) and result: published,
	// duplicate (an idempotency key seen within its window: a re-publish
	// after a crash) or invalid (skipped; see docs/backend.md).
	ConsumerRecords *prometheus.CounterVec
	// ConsumerErrors counts failed attempts of the async consumers (the
	// database, Kafka or the broker did not answer), by consumer; each is
	// retried, nothing is skipped.
	ConsumerErrors *prometheus.CounterVec
	// ConsumerLagSeconds is, per consumer, the age of the oldest row in the
	// outbox consumer's last batch (0 when the table was empty).
	ConsumerLagSeconds *prometheus.GaugeVec
	// ConsumerLagRecords is, per consumer, how many records of its
	// assigned partitions the Kafka consumer has yet to take, as of its
	// last fetch.
	ConsumerLagRecords *prometheus.GaugeVec
}

// New creates the metrics and registers them, with the Go runtime and process
// collectors, on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "connections",
			Help: "Open client connections.",
		}, []string{"transport"}),
		ConnectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "connections_accepted_total",
			Help: "Client connections accepted.",
		}, []string{"transport"}),
		Subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "subscriptions",
			Help: "Active client subscriptions.",
		}),
		Channels: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "channels",
			Help: "Channels with at least one subscriber on this node.",
		}),
		MessagesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_sent_total",
			Help: "Messages written to client connections.",
		}),
		BytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "bytes_sent_total",
			Help: "Message bytes written to client connections, before framing.",
		}),
		MessagesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_received_total",
			Help: "Messages received from client connections.",
		}),
		BytesReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "bytes_received_total",
			Help: "Message bytes received from client connections.",
		}),
		SocketWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "socket_writes_total",
			Help: "Write calls to client connections (each may carry several messages).",
		}),
		DirectWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "direct_writes_total",
			Help: "Of socket_writes_total, the writes made at once by the goroutine that queued the message (fan-out or command) on an idle connection, without a writer goroutine.",
		}),
		DirectWritesActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "direct_writes_active",
			Help: "1 while the fan-out writes idle connections itself (the node sends under 20,000 messages/s), 0 while writer goroutines do all writes.",
		}),
		WriteDelayActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "write_delay_active",
			Help: "1 while write_delay batches busy connections' writes (the writers could not keep up at write_delay_min_rate messages/s or more), else 0.",
		}),
		Publications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "publications_total",
			Help: "Publications accepted, by source.",
		}, []string{"source"}),
		PublicationsDeduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "publications_deduplicated_total",
			Help: "Publishes that repeated an idempotency key within its window: answered with the original position, nothing published. By source.",
		}, []string{"source"}),
		DeliveryLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "delivery_latency_seconds",
			Help:    "Time from a publication reaching this node to its write into a subscriber's connection.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		QueueOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "queue_overflows_total",
			Help: "Connections closed because their outbound queue overflowed (slow consumers).",
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "client_errors_total",
			Help: "Error replies sent to clients, by error code.",
		}, []string{"code"}),
		Disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "disconnects_total",
			Help: "Connections closed by the server, by close code.",
		}, []string{"code"}),
		Recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "recoveries_total",
			Help: "Subscriptions that asked to recover from a position, by whether they recovered.",
		}, []string{"recovered"}),
		Resets: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "resets_total",
			Help: "Reset pushes sent because a channel's history was lost while subscribed.",
		}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "rate_limited_total",
			Help: "Client commands refused by the per-connection rate limit.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "messages_dropped_total",
			Help: "Messages meant for a client and never written, by reason.",
		}, []string{"reason"}),
		Compressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "websocket_compressed_messages_total",
			Help: "WebSocket messages sent or received compressed (permessage-deflate), by direction.",
		}, []string{"direction"}),
		CompressionSaved: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "websocket_compression_saved_bytes_total",
			Help: "Payload bytes permessage-deflate kept off the wire (uncompressed minus compressed size).",
		}),
		DeltaPublications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "delta_publications_total",
			Help: "Publications queued on delta-compressed subscriptions, by how they went (delta, whole).",
		}, []string{"kind"}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "api_requests_total",
			Help: "Server API requests, by method and HTTP status.",
		}, []string{"method", "status"}),
		TURNAllocations: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "turn_allocations",
			Help: "TURN allocations open on this node.",
		}),
		TURNAllocationsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "turn_allocations_refused_total",
			Help: "TURN Allocate requests refused, by reason.",
		}, []string{"reason"}),
		TURNPermissionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "turn_permissions_refused_total",
			Help: "TURN permissions, channel binds, TCP connects and relayed datagrams refused by the peer policy, by reason.",
		}, []string{"reason"}),
		ProxyCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "proxy_calls_total",
			Help: "Calls to the application backend's proxy hooks, by hook and result.",
		}, []string{"hook", "result"}),
		ProxyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "proxy_duration_seconds",
			Help:    "Duration of calls to the application backend's proxy hooks, by hook.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"hook"}),
		WebhookEmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_emitted_total",
			Help: "Lifecycle reports written to the webhook queue, by kind.",
		}, []string{"kind"}),
		WebhookEmitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_emit_failures_total",
			Help: "Failed writes of lifecycle reports to the webhook queue (joins and connects refused, leaves and disconnects held).",
		}),
		WebhookHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "webhook_held",
			Help: "Lifecycle reports held by this node after a failed write, waiting to be written again.",
		}),
		WebhookLost: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_lost_total",
			Help: "Lifecycle reports dropped because this node held too many waiting for the broker.",
		}),
		WebhookDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_delivered_total",
			Help: "Webhook events acknowledged by the endpoint, by type.",
		}, []string{"type"}),
		WebhookRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_retries_total",
			Help: "Webhook requests sent again after a failure.",
		}),
		WebhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhook_failures_total",
			Help: "Failed webhook requests, by reason.",
		}, []string{"reason"}),
		WebhookBatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "webhook_batch_duration_seconds",
			Help:    "Time from a webhook batch's first attempt to its acknowledgement, retries included.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300},
		}),
		WebhookBacklog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "webhook_backlog",
			Help: "Lifecycle reports waiting in the webhook partitions this node sends.",
		}),
		ConsumerRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "consumer_records_total",
			Help: "Outbox rows and Kafka records taken by the async consumers, by consumer and result (published, duplicate, invalid).",
		}, []string{"consumer", "result"}),
		ConsumerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "consumer_errors_total",
			Help: "Failed attempts of the async consumers (retried), by consumer.",
		}, []string{"consumer"}),
		ConsumerLagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "consumer_lag_seconds",
			Help: "Age of the oldest outbox row in the consumer's last batch.",
		}, []string{"consumer"}),
		ConsumerLagRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "consumer_lag_records",
			Help: "Records of the assigned Kafka partitions not yet taken, as of the last fetch.",
		}, []string{"consumer"}),
	}
	reg.MustRegister(
		m.WebhookEmitted, m.WebhookEmitFailures, m.WebhookHeld, m.WebhookLost, m.WebhookDelivered, m.WebhookRetries, m.WebhookFailures, m.WebhookBatchDuration, m.WebhookBacklog,
		m.Connections, m.ConnectionsTotal, m.Subscriptions, m.Channels,
		m.MessagesSent, m.BytesSent, m.MessagesReceived, m.BytesReceived,
		m.SocketWrites, m.DirectWrites, m.DirectWritesActive, m.WriteDelayActive, m.Publications, m.PublicationsDeduplicated, m.DeliveryLatency, m.QueueOverflows,
		m.Compressed, m.CompressionSaved, m.DeltaPublications,
		m.TURNAllocations, m.TURNAllocationsRefused, m.TURNPermissionsRefused,
		m.Errors, m.Disconnects, m.APIRequests, m.ProxyCalls, m.ProxyDuration, m.Recoveries, m.RateLimited, m.Resets, m.Dropped,
		m.ConsumerRecords, m.ConsumerErrors, m.ConsumerLagSeconds, m.ConsumerLagRecords,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.DeltaSent, m.DeltaWhole = m.DeltaPublications.WithLabelValues("delta"), m.DeltaPublications.WithLabelValues("whole")
	m.dropped = make(map[DropReason]prometheus.Counter, len(dropReasons))
	for _, r := range dropReasons {
		m.dropped[r] = m.Dropped.WithLabelValues(string(r))
	}
	return m
}

// Error counts one error reply with the given code. Codes come from a fixed
// table, so the label set stays small.
func (m *Metrics) Error(code int) {
	m.Errors.WithLabelValues(strconv.Itoa(code)).Inc()
}

// Disconnect counts one server-side close with the given code.
func (m *Metrics) Disconnect(code uint16) {
	m.Disconnects.WithLabelValues(strconv.FormatUint(uint64(code), 10)).Inc()
}

// Value reads the current value of a counter or a gauge, for code that
// acts on a figure it already exports (0 for other kinds of metric).
func Value(m prometheus.Metric) float64 {
	var d dto.Metric
	if m.Write(&d) != nil {
		return 0
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

// HistogramUpTo returns how many observations of h were at most bound
// (which must be one of its bucket bounds; otherwise the next smaller
// bound counts) and how many there were in all.
func HistogramUpTo(h prometheus.Histogram, bound float64) (upTo, total uint64) {
	var d dto.Metric
	if h.Write(&d) != nil {
		return 0, 0
	}
	hist := d.GetHistogram()
	for _, b := range hist.GetBucket() {
		if b.GetUpperBound() <= bound {
			upTo = b.GetCumulativeCount()
		}
	}
	return upTo, hist.GetSampleCount()
}

// DropReason says why a message meant for a client was not written.
type DropReason string

// The reasons a message is dropped.
const (
	// DropQueueMessages: the connection's outbound queue reached its bound
	// by count; the queue is discarded and the client closed (4001).
	DropQueueMessages DropReason = "queue_full_messages"
	// DropQueueBytes: likewise, by bytes.
	DropQueueBytes DropReason = "queue_full_bytes"
	// DropDuplicate: a publication at or below the subscriber's last offset,
	// already delivered (from history or live).
	DropDuplicate DropReason = "duplicate"
	// DropPendingEvent: a join or leave event while the subscribe that
	// would show it is still reading history.
	DropPendingEvent DropReason = "event_during_subscribe"
	// DropPendingOverflow: live publications buffered during a subscribe's
	// history read went over the bound; the subscribe answers
	// recovered:false from after them.
	DropPendingOverflow DropReason = "subscribe_buffer_full"
	// DropBrokerGap: offsets skipped in a channel's live stream that the
	// broker could not fill (counted per missing offset).
	DropBrokerGap DropReason = "broker_gap"
	// DropWriteFailed: messages of a socket write that failed.
	DropWriteFailed DropReason = "write_failed"
	// DropClosed: messages still queued when the peer went away.
	DropClosed DropReason = "connection_closed"
)

var dropReasons = []DropReason{DropQueueMessages, DropQueueBytes, DropDuplicate, DropPendingEvent, DropPendingOverflow, DropBrokerGap, DropWriteFailed, DropClosed}

// Drop counts n messages dropped for reason.
func (m *Metrics) Drop(reason DropReason, n int) {
	if n <= 0 {
		return
	}
	c, ok := m.dropped[reason]
	if !ok {
		c = m.Dropped.WithLabelValues(string(reason))
	}
	c.Add(float64(n))
}
