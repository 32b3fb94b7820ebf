package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/metrics"
)

// Options configure a Dispatcher. Endpoint, Queue, NodeID and Metrics are
// required; every other zero value takes the default on its field.
type Options struct {
	// Endpoint is the URL events are POSTed to.
	Endpoint string
	// Secret signs each request's body (SignatureHeader). Without one the
	// header is not sent.
	Secret []byte
	// Queue keeps the facts and the partitions' state (the broker).
	Queue Queue
	// NodeID names this node in facts and in the queue's liveness marks.
	NodeID string
	// Partitions is how many partitions facts are spread over; each has
	// one sender in the cluster. Every node must use the same number.
	// Default 16.
	Partitions int
	// BatchSize is the most facts one request's events come from. Default
	// 100.
	BatchSize int
	// Timeout bounds one request, answer included. Default 10s.
	Timeout time.Duration
	// BackoffMin and BackoffMax bound the pause before a retry: it doubles
	// from BackoffMin up to BackoffMax, and a random half of it is jitter.
	// Defaults 500ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// LeaseTTL is how long a partition's lease and a node's liveness mark
	// last without renewal (they are renewed every third of it): a dead
	// sender's partitions move to another node, and a dead node's clients
	// are removed, within about twice this. Default 15s.
	LeaseTTL time.Duration
	// PollInterval is how often a sender with nothing to send looks for
	// facts written by other nodes. Default 250ms.
	PollInterval time.Duration
	// Selected reports whether events of type typ are sent for channel
	// (""for client.* events). Default: every event.
	Selected func(channel, typ string) bool
	// Client sends the requests. Default: a client with Timeout that does
	// not follow redirects (a 3xx answer is a failure, retried).
	Client *http.Client
	// Rejoin, when set, reports every connection and live subscription of
	// this node again (with ClientConnected and Joined). The dispatcher calls it when the node's liveness mark
	// was found missing: at Start, and after the node was cut off from
	// the broker for longer than LeaseTTL, when other nodes may have
	// removed its clients as gone. It must return within the context.
	Rejoin func(ctx context.Context)
	// Clock tells time for pauses and leases. Default the real clock.
	Clock clockwork.Clock
	// Logger receives delivery failures. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the webhook metrics.
	Metrics *metrics.Metrics
}

func (o *Options) setDefaults() error {
	if o.Endpoint == "" || o.Queue == nil || o.NodeID == "" || o.Metrics == nil {
		return errors.New("webhook: Endpoint, Queue, NodeID and Metrics are required")
	}
	if o.Partitions <= 0 {
		o.Partitions = 16
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 500 * time.Millisecond
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(30*time.Second, o.BackoffMin)
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.Selected == nil {
		o.Selected = func(string, string) bool { return true }
	}
	if o.Client == nil {
		o.Client = &http.Client{
			Timeout:   o.Timeout,
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Dispatcher writes this node's reports to the queue and sends the events
// of the partitions whose lease it holds. It implements the engine's
// lifecycle reports (hub.Lifecycle).
type Dispatcher struct {
	opts  Options
	q     Queue
	log   *slog.Logger
	m     *metrics.Metrics
	clock clockwork.Clock
	owner string // this dispatcher's name in leases: node id and a random part

	life      context.Context // cancelled by Stop; bounds every loop
	stop      context.CancelFunc
	wg        sync.WaitGroup
	rejoining atomic.Bool // a Rejoin is running

	// mu guards senders: the partitions this node holds, and how to stop
	// and wake each one's sender.
	mu      sync.Mutex
	senders map[int]*sender

	// Facts held after a failed write (held.go), by partition.
	held      []heldPart
	heldTotal atomic.Int64
	heldWake  chan struct{} // 1-slot: a fact was held
}

// sender is the goroutine that sends one partition's events while this
// node holds its lease.
type sender struct {
	cancel  context.CancelFunc
	wake    chan struct{} // 1-slot: a fact was appended on this node
	renewed time.Time     // the lease's last successful renewal; owned by the lease loop
	backlog int64         // last backlog read; guarded by Dispatcher.mu
}

// New returns a dispatcher; Start starts it.
func New(opts Options) (*Dispatcher, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	return &Dispatcher{
		opts:     opts,
		q:        opts.Queue,
		log:      opts.Logger.With("component", "webhook"),
		m:        opts.Metrics,
		clock:    opts.Clock,
		owner:    opts.NodeID + "/" + randomHex(6),
		senders:  map[int]*sender{},
		held:     make([]heldPart, opts.Partitions),
		heldWake: make(chan struct{}, 1),
	}, nil
}

// Start marks this node alive, so that the facts it writes are not taken
// for a dead node's, and starts taking partitions' leases. The dispatcher
// runs until Stop.
func (d *Dispatcher) Start(ctx context.Context) error {
	had, err := d.q.Beat(ctx, d.opts.NodeID, d.opts.LeaseTTL)
	if err != nil {
		return fmt.Errorf("webhook: mark node alive: %w", err)
	}
	if !had && d.opts.Rejoin != nil {
		// A restart within LeaseTTL finds its mark; otherwise the node's
		// subscriptions (none yet, usually) are reported again.
		d.opts.Rejoin(ctx)
	}
	d.life, d.stop = context.WithCancel(context.Background())
	d.wg.Add(2)
	go d.leaseLoop()
	go d.retryLoop()
	return nil
}

// Stop stops sending: senders abandon the batch in flight, which stays in
// the queue for the next holder of the partition. Reports still work (a
// node that is shutting down writes the leaves of its clients), but facts
// held after a failed write are no longer retried but by the next report
// to their partition. Stop waits for the goroutines to end.
func (d *Dispatcher) Stop() {
	if d.stop == nil {
		return
	}
	d.stop()
	d.wg.Wait()
	if t, ok := d.opts.Client.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

// partition returns the partition of key (a channel or a client id).
func (d *Dispatcher) partition(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(d.opts.Partitions))
}

// report writes one fact to its partition's queue. Facts held after a
// failed write (held.go) are written first, so that this node's facts of
// one partition reach the queue in the order they were made. When the
// write fails and keep is set, the fact is held and written again later
// (a leave or a disconnect, which cannot be refused); the error is
// returned either way.
func (d *Dispatcher) report(ctx context.Context, f fact, key string, keep bool) error {
	f.ID, f.Node, f.Time = randomHex(12), d.opts.NodeID, d.clock.Now().UnixMilli()
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("webhook: encode %s: %w", f.Kind, err)
	}
	p := d.partition(key)
	err = d.flushHeld(ctx, p)
	if err == nil {
		err = d.q.Append(ctx, p, data)
	}
	if err != nil {
		d.m.WebhookEmitFailures.Inc()
		if keep {
			d.hold(p, f, data)
		} else {
			// The engine refuses the command, and logs it.
			d.log.Debug("webhook report refused", "kind", f.Kind, "channel", f.Channel, "client", f.Client, "err", err)
		}
		return fmt.Errorf("webhook: append %s: %w", f.Kind, err)
	}
	d.m.WebhookEmitted.WithLabelValues(f.Kind).Inc()
	d.wake(p)
	return nil
}

// wake tells partition p's sender, if this node holds it, that a fact was
// written.
func (d *Dispatcher) wake(p int) {
	d.mu.Lock()
	if s := d.senders[p]; s != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	d.mu.Unlock()
}

// channelSelected reports whether any channel or member event is sent for
// channel: when none is, its joins and leaves are not even written.
func (d *Dispatcher) channelSelected(channel string) bool {
	for _, t := range []string{ChannelOccupied, ChannelVacated, MemberAdded, MemberRemoved} {
		if d.opts.Selected(channel, t) {
			return true
		}
	}
	return false
}

// clientSelected reports whether either client event is sent: then both
// connection facts are written, since a client.disconnected is sent only
// for a connection the partition's state holds.
func (d *Dispatcher) clientSelected() bool {
	return d.opts.Selected("", ClientConnected) || d.opts.Selected("", ClientDisconnected)
}

// ClientConnected reports a connection that completed its connect. An
// error means the fact may not be written: the caller refuses the connect
// and reports ClientDisconnected, which undoes it if it was written after
// all (a disconnection of a client not connected changes nothing).
func (d *Dispatcher) ClientConnected(ctx context.Context, client, user, transport string) error {
	if !d.clientSelected() {
		return nil
	}
	return d.report(ctx, fact{Kind: factConn, Client: client, User: user, Transport: transport}, client, false)
}

// ClientDisconnected reports the end of a connection ClientConnected
// reported. It cannot fail: a fact the queue does not take is held and
// written again (held.go).
func (d *Dispatcher) ClientDisconnected(ctx context.Context, client, user, transport string) {
	if d.clientSelected() {
		_ = d.report(ctx, fact{Kind: factDisc, Client: client, User: user, Transport: transport}, client, true)
	}
}

// Joined reports a client's subscription to channel. An error means the
// fact may not be written: the caller refuses the subscribe and reports
// Left, which undoes it if it was written after all (a leave of a client
// not in the channel changes nothing).
func (d *Dispatcher) Joined(ctx context.Context, channel, client, user string) error {
	if !d.channelSelected(channel) {
		return nil
	}
	return d.report(ctx, fact{Kind: factJoin, Channel: channel, Client: client, User: user}, channel, false)
}

// Left reports the end of a subscription Joined recorded. It cannot fail:
// a fact the queue does not take is held and written again (held.go).
func (d *Dispatcher) Left(ctx context.Context, channel, client, user string) {
	if d.channelSelected(channel) {
		_ = d.report(ctx, fact{Kind: factLeave, Channel: channel, Client: client, User: user}, channel, true)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
