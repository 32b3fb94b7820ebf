package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

var (
	_ broker.Broker        = (*Broker)(nil)
	_ broker.PresenceStore = (*Broker)(nil)
)

// Broker is a broker.Broker and broker.PresenceStore on NATS. Create it
// with New; its methods are safe for concurrent use.
type Broker struct {
	// Static after New.
	opts       Options
	nc         *gonats.Conn
	js         jetstream.JetStream
	log        *slog.Logger
	histPrefix string // "<prefix>.hist.": stored publications
	livePrefix string // "<prefix>.pub.": live publications and events
	streamBase string // history stream names are streamBase_<id>
	bucket     string // presence bucket
	idemBucket string // idempotency keys bucket

	// life is the broker's lifetime: cancelled by Close, it bounds
	// background work (gap fills, catch-up after reconnection, purges).
	life   context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup // background goroutines
	closed atomic.Bool

	handler atomic.Pointer[handlerBox] // set by Start

	// connMu guards conn, the lifetime of the current connection to the
	// server: cancelled when the connection is lost (and by Close),
	// replaced when the client reconnects. Requests in flight are bound to
	// it, because the client library leaves them waiting for their timeout
	// when the connection drops.
	connMu  sync.Mutex
	conn    context.Context
	connEnd context.CancelFunc

	streamMu sync.Mutex                // serialises looking up or creating the stream
	stream   atomic.Pointer[streamRef] // the history stream in use
	kvMu     sync.Mutex                // serialises looking up or creating the bucket
	kv       atomic.Pointer[kvRef]     // the presence bucket in use
	idemKV   atomic.Pointer[kvRef]     // the idempotency bucket, once used
	purges   chan purgeReq             // to the purge loop; never closed
	resync   chan struct{}             // reconnections, to the catch-up loop; never closed
	inbox    chan *gonats.Msg          // every live subscription's messages, to the dispatcher; never closed

	pubMu    sync.Mutex           // guards pubLocks and tips
	pubLocks map[string]*chanLock // channels being published to on this node
	tips     map[string]tip       // newest stored message of recent channels

	wh webhookQueue // the webhook queue (webhook.go)

	subMu sync.RWMutex         // guards live
	live  map[string]*liveChan // channels this node is subscribed to, by core subject

	// beforeCatchUp, when set (by tests only, before Start), is called
	// before a channel is caught up from history, so that a test can
	// stall one channel's catch-up.
	beforeCatchUp func(channel string)
}

type handlerBox struct{ h broker.Handler }

// streamRef is one incarnation of the history stream.
type streamRef struct {
	name string
	s    jetstream.Stream
}

type kvRef struct{ kv jetstream.KeyValue }

// tip is what a node remembers of a channel's newest stored message, so
// that the next Publish need not read it.
type tip struct {
	stream string // stream name the message is in
	seq    uint64 // its stream sequence
	offset uint64
	epoch  string
	floor  uint64 // oldest offset the history keeps
}

// chanLock serialises this node's publishers of one channel, so that they
// do not race each other for offsets (other nodes still may).
type chanLock struct {
	sem  chan struct{} // holds one token while locked
	refs int           // guarded by Broker.pubMu
}

type purgeReq struct {
	subject string
	keep    uint64
}

// New connects to the NATS server at opts.URL and finds or creates the
// history stream and the presence bucket. A server that cannot be reached
// gives an error wrapping broker.ErrUnavailable. The broker delivers
// nothing until Start.
func New(ctx context.Context, opts Options) (*Broker, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Broker{
		opts:       opts,
		log:        opts.Logger.WithGroup("nats"),
		histPrefix: opts.Prefix + ".hist.",
		livePrefix: opts.Prefix + ".pub.",
		streamBase: strings.ToUpper(strings.ReplaceAll(opts.Prefix, ".", "_")),
		bucket:     strings.ReplaceAll(opts.Prefix, ".", "_") + "_presence",
		idemBucket: strings.ReplaceAll(opts.Prefix, ".", "_") + "_idempotency",
		purges:     make(chan purgeReq, 64),
		resync:     make(chan struct{}, 1),
		inbox:      make(chan *gonats.Msg, inboxSize),
		pubLocks:   map[string]*chanLock{},
		tips:       map[string]tip{},
		live:       map[string]*liveChan{},
	}
	b.life, b.stop = context.WithCancel(context.Background())
	b.conn, b.connEnd = context.WithCancel(b.life)
	dial := opts.RequestTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < dial {
		dial = time.Until(dl)
	}
	b.nc, err = gonats.Connect(opts.URL,
		gonats.Name(opts.Name),
		gonats.Timeout(dial),
		gonats.MaxReconnects(-1),
		gonats.ReconnectWait(opts.ReconnectWait),
		// Nothing is buffered while disconnected: calls fail at once with
		// ErrUnavailable instead of being sent late to a server that may
		// have lost the state they were computed from.
		gonats.ReconnectBufSize(-1),
		gonats.DisconnectErrHandler(func(_ *gonats.Conn, err error) {
			b.connLost()
			if !b.closed.Load() {
				b.log.Warn("disconnected from NATS", "err", err)
			}
		}),
		gonats.ReconnectHandler(func(c *gonats.Conn) {
			b.connBack()
			b.log.Info("reconnected to NATS", "server", c.ConnectedUrlRedacted())
			select {
			case b.resync <- struct{}{}:
			default:
			}
		}),
		gonats.ErrorHandler(func(_ *gonats.Conn, sub *gonats.Subscription, err error) {
			if sub != nil {
				b.log.Warn("NATS subscription error", "subject", sub.Subject, "err", err)
				return
			}
			b.log.Warn("NATS error", "err", err)
		}),
	)
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("nats broker: connect: %w: %w", broker.ErrUnavailable, err)
	}
	if b.js, err = jetstream.New(b.nc, jetstream.WithDefaultTimeout(opts.RequestTimeout)); err == nil {
		if _, err = b.findStream(ctx, nil); err == nil {
			_, err = b.findBucket(ctx, nil)
		}
	}
	if err != nil {
		b.stop()
		b.nc.Close()
		return nil, err
	}
	b.wg.Add(2)
	go b.purgeLoop()
	go b.dispatchLoop()
	return b, nil
}

// Start implements broker.Broker: it starts delivering to h.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if h == nil {
		return errors.New("nats broker: nil handler")
	}
	if b.closed.Load() {
		return fmt.Errorf("nats broker: start: %w", broker.ErrClosed)
	}
	if !b.handler.CompareAndSwap(nil, &handlerBox{h}) {
		return errors.New("nats broker: started twice")
	}
	if err := b.startControl(h); err != nil {
		return err
	}
	b.wg.Add(1)
	go b.resyncLoop()
	return nil
}

// Ping reports whether the server and its JetStream answer now; the server
// can use it for readiness. It is not part of broker.Broker.
func (b *Broker) Ping(ctx context.Context) error {
	if b.closed.Load() {
		return fmt.Errorf("nats broker: ping: %w", broker.ErrClosed)
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if _, err := b.js.AccountInfo(ctx); err != nil {
		return b.fail("ping", err)
	}
	return nil
}

// Close implements broker.Broker. It stops deliveries and background work,
// then closes the connection.
func (b *Broker) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.stop()
	b.subMu.Lock()
	live := b.live
	b.live = map[string]*liveChan{}
	b.subMu.Unlock()
	for _, c := range live {
		c.close()
	}
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("nats broker: close: %w", ctx.Err())
	}
	b.nc.Close()
	return err
}

func (b *Broker) usable(channel string) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	if channel == "" {
		return errors.New("empty channel name")
	}
	return nil
}

// lockChannel waits, within ctx, until this node may publish to channel.
func (b *Broker) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, b.opts.RequestTimeout)
	}
	b.connMu.Lock()
	conn := b.conn
	b.connMu.Unlock()
	if conn.Err() != nil {
		// Lost, or back but not yet renewed by connBack: the client
		// library fails requests at once while it is disconnected.
		return ctx, cancel
	}
	ctx, end := context.WithCancel(ctx)
	stop := context.AfterFunc(conn, end)
	return ctx, func() {
		stop()
		end()
		cancel()
	}
}

// connLost ends the current connection's lifetime.
