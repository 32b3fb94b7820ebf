package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
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

// Options configure a NATS broker. URL is required; every other zero value
// means the default documented on the field.
type Options struct {
	// URL of the NATS server, such as nats://127.0.0.1:4222; a comma
	// separated list names several servers of one cluster. Credentials may be
	// given in the URL (nats://user:password@host:4222).
	URL string
	// Name is the connection's name in the server's monitoring. Default
	// "switchboard".
	Name string
	// Prefix starts every subject, stream and bucket name the broker uses,
	// so that several Switchboard clusters can share one NATS: tokens of
	// ASCII letters, digits, '-' and '_' separated by dots. All nodes of a
	// cluster must use the same prefix. Default "switchboard".
	Prefix string
	// Replicas is how many servers of a NATS cluster keep a copy of the
	// history stream and the presence bucket (1, 3 or 5). Default 1.
	Replicas int
	// MemoryStorage keeps history and presence in the servers' memory
	// instead of files: faster, but lost when the servers restart, after
	// which clients are told they could not recover. Default false.
	MemoryStorage bool
	// HistoryMaxSize caps the history size a publication may ask for
	// (PublishOptions.HistorySize above it is lowered to it); the stream
	// keeps at most a few more messages per channel. Default 1000.
	HistoryMaxSize int
	// HistoryMaxAge is the longest time the stream keeps a message; it must
	// be longer than every HistoryTTL in use. A channel without publications
	// for that long is forgotten, and its next publication starts a new
	// epoch. Default 24h; a negative value keeps messages with no age limit
	// (and the newest message of every channel ever used forever).
	HistoryMaxAge time.Duration
	// PresenceMaxAge is how long the presence bucket keeps an entry that is
	// not refreshed. Entries are hidden once the ttl given to AddPresence has
	// passed; this only removes them from storage, and shortens a longer ttl.
	// Default 1h.
	PresenceMaxAge time.Duration
	// GapTimeout is how long a node waits for a live publication that is
	// missing from a channel's sequence before reading it from history.
	// Longer waits spare history reads when announcements from different
	// nodes cross; shorter ones shorten the stall after a publisher dies
	// between storing and announcing. Default 500ms.
	GapTimeout time.Duration
	// ReconnectWait is the pause between attempts to reconnect to a lost
	// server (the client adds jitter). Default 1s.
	ReconnectWait time.Duration
	// RequestTimeout bounds a request to the server when the caller's
	// context has no deadline, and background requests. Default 5s.
	RequestTimeout time.Duration
	// Logger receives connection events. Default: discard.
	Logger *slog.Logger
	// Now returns the current time; tests replace it to age history and
	// presence. Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() (Options, error) {
	if o.URL == "" {
		return o, errors.New("nats broker: no URL")
	}
	if o.Name == "" {
		o.Name = "switchboard"
	}
	if o.Prefix == "" {
		o.Prefix = "switchboard"
	}
	if !validPrefix(o.Prefix) {
		return o, fmt.Errorf("nats broker: prefix %q: want tokens of letters, digits, '-' and '_' separated by dots", o.Prefix)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.HistoryMaxSize <= 0 {
		o.HistoryMaxSize = 1000
	}
	switch {
	case o.HistoryMaxAge == 0:
		o.HistoryMaxAge = 24 * time.Hour
	case o.HistoryMaxAge < 0:
		o.HistoryMaxAge = 0 // no limit, as JetStream spells it
	}
	if o.PresenceMaxAge <= 0 {
		o.PresenceMaxAge = time.Hour
	}
	if o.GapTimeout <= 0 {
		o.GapTimeout = 500 * time.Millisecond
	}
	if o.ReconnectWait <= 0 {
		o.ReconnectWait = time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Tuning constants.
const (
	// purgeSlack is how many messages above its history size a channel may
	// keep: the stream's per-subject limit is HistoryMaxSize+purgeSlack, and
	// a purge keeps size+purgeSlack so that a reader that has just read the
	// position still finds the oldest publication it wants.
	purgeSlack = 8
	// purgeEvery: a channel is purged every max(size, purgeEvery) offsets.
	purgeEvery = 64
	// walkLimit is the most publications History reads one by one through
	// the previous-sequence links; longer ranges are read with a consumer.
	walkLimit = 8
	// maxPublishAttempts bounds the retries of one Publish that keeps losing
	// the race for the next offset (or finding the stream replaced).
	maxPublishAttempts = 50
	// maxTips bounds the cache of channels' newest messages.
	maxTips = 1 << 16
	// maxPending bounds the publications a node holds back behind a gap
	// before it reads history at once.
	maxPending = 1024
	// inboxSize is the buffer between the connection and the dispatcher;
	// when it is full the client drops messages (a slow consumer), which
	// subscribers then read from history.
	inboxSize = 1 << 16
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
	purges   chan purgeReq             // to the purge loop; never closed
	resync   chan struct{}             // reconnections, to the catch-up loop; never closed
	inbox    chan *gonats.Msg          // every live subscription's messages, to the dispatcher; never closed

	pubMu    sync.Mutex           // guards pubLocks and tips
	pubLocks map[string]*chanLock // channels being published to on this node
	tips     map[string]tip       // newest stored message of recent channels

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

// Publish implements broker.Broker. It stores the publication as the
// channel's next offset (see the package documentation), then announces it
// to the subscribed nodes.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.usable(channel); err != nil {
		return broker.Position{}, fmt.Errorf("nats broker: publish: %w", err)
	}
	size := min(max(opts.HistorySize, 0), b.opts.HistoryMaxSize)
	ttl := max(opts.HistoryTTL, 0)
	tok := token(channel)
	subject := b.histPrefix + tok
	l, err := b.lockChannel(ctx, channel)
	if err != nil {
		return broker.Position{}, fmt.Errorf("nats broker: publish to %q: %w", channel, err)
	}
	defer b.unlockChannel(channel, l)

	var lastErr error
	for attempt := 0; attempt < maxPublishAttempts; attempt++ {
		if attempt >= 3 {
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return broker.Position{}, fmt.Errorf("nats broker: publish to %q: %w (last conflict: %w)", channel, err, lastErr)
			}
		}
		r, err := b.currentStream(ctx)
		if err != nil {
			return broker.Position{}, err
		}
		t, ok := b.cachedTip(channel)
		if !ok || t.stream != r.name {
			last, found, err := b.newest(ctx, r, subject)
			if isStreamGone(err) {
				if _, err := b.findStream(ctx, r); err != nil {
					return broker.Position{}, err
				}
				lastErr = err
				continue
			}
			if err != nil {
				return broker.Position{}, b.fail("publish to "+strconv.Quote(channel), err)
			}
			t = tip{stream: r.name, epoch: newEpoch(), floor: 1}
			if found {
				t.seq, t.offset, t.epoch, t.floor = last.seq, last.pub.Offset, last.epoch, last.floor
			}
		}
		pub := broker.Publication{Offset: t.offset + 1, Data: data, Time: b.opts.Now()}
		floor := nextFloor(t.floor, pub.Offset, size)
		ack, err := b.store(ctx, r, subject, pub, t, floor, ttl)
		switch {
		case err == nil:
			b.setTip(channel, tip{stream: r.name, seq: ack.Sequence, offset: pub.Offset, epoch: t.epoch, floor: floor})
			b.announce(tok, pub, t.epoch)
			b.maybePurge(subject, pub.Offset, size)
			return broker.Position{Offset: pub.Offset, Epoch: t.epoch}, nil
		case isConflict(err):
			b.dropTip(channel)
			lastErr = err
		case isStreamGone(err):
			b.dropTip(channel)
			if _, err := b.findStream(ctx, r); err != nil {
				return broker.Position{}, err
			}
			lastErr = err
		default:
			// The write may or may not have been stored: forget the tip, the
			// next Publish reads the truth.
			b.dropTip(channel)
			return broker.Position{}, b.fail("publish to "+strconv.Quote(channel), err)
		}
	}
	return broker.Position{}, fmt.Errorf("nats broker: publish to %q: gave up after %d attempts: %w", channel, maxPublishAttempts, lastErr)
}

// nextFloor returns the oldest offset a channel's history keeps after
// publication offset was stored with history size size, given the floor
// before it: the newest size publications, never one that an earlier,
// smaller size already dropped (as the memory broker's ring does).
func nextFloor(floor, offset uint64, size int) uint64 {
	if size <= 0 {
		return offset + 1
	}
	if offset >= uint64(size) {
		floor = max(floor, offset-uint64(size)+1)
	}
	return max(floor, 1)
}

// store appends pub to the channel's chain after t, or fails with a
// conflict when t is no longer the channel's newest message.
func (b *Broker) store(ctx context.Context, r *streamRef, subject string, pub broker.Publication, t tip, floor uint64, ttl time.Duration) (*jetstream.PubAck, error) {
	m := &gonats.Msg{Subject: subject, Data: pub.Data, Header: gonats.Header{}}
	setPublication(m.Header, pub, t.epoch)
	m.Header.Set(hdrPrev, strconv.FormatUint(t.seq, 10))
	m.Header.Set(hdrFloor, strconv.FormatUint(floor, 10))
	m.Header.Set(hdrTTL, strconv.FormatInt(int64(ttl), 10))
	m.Header.Set(jetstream.ExpectedStreamHeader, r.name)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(t.seq, 10))
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.js.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
}

// announce sends a stored publication to the nodes subscribed to its
// channel. A lost announcement is recovered by the subscribers from
// history (see liveChan), so a failure is only logged.
func (b *Broker) announce(tok string, pub broker.Publication, epoch string) {
	m := &gonats.Msg{Subject: b.livePrefix + tok, Data: pub.Data, Header: gonats.Header{}}
	setPublication(m.Header, pub, epoch)
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Debug("announce failed", "subject", m.Subject, "offset", pub.Offset, "err", err)
	}
}

// PublishEvent implements broker.Broker: the event goes to the channel's
// core subject only.
func (b *Broker) PublishEvent(ctx context.Context, channel string, data []byte) error {
	if err := b.usable(channel); err != nil {
		return fmt.Errorf("nats broker: publish event: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats broker: publish event to %q: %w", channel, err)
	}
	m := &gonats.Msg{Subject: b.livePrefix + token(channel), Data: data, Header: gonats.Header{}}
	m.Header.Set(hdrEvent, "1")
	if err := b.nc.PublishMsg(m); err != nil {
		return b.fail("publish event to "+strconv.Quote(channel), err)
	}
	return nil
}

// History implements broker.Broker.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryResult, error) {
	if err := b.usable(channel); err != nil {
		return broker.HistoryResult{}, fmt.Errorf("nats broker: history: %w", err)
	}
	subject := b.histPrefix + token(channel)
	r, top, err := b.top(ctx, subject)
	if err != nil {
		return broker.HistoryResult{}, b.fail("history of "+strconv.Quote(channel), err)
	}
	pos := broker.Position{Offset: top.pub.Offset, Epoch: top.epoch}
	res, err := broker.SelectHistory(pos, q, func(after uint64) ([]broker.Publication, error) {
		return b.kept(ctx, r, subject, top, after)
	})
	if errors.Is(err, broker.ErrEpochMismatch) {
		return res, fmt.Errorf("nats broker: history of %q since epoch %q: %w", channel, q.Since.Epoch, err)
	}
	if err != nil {
		return broker.HistoryResult{}, b.fail("history of "+strconv.Quote(channel), err)
	}
	return res, nil
}

// usable checks the broker is open and the channel name is not empty.
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
func (b *Broker) lockChannel(ctx context.Context, channel string) (*chanLock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // select below would pick a free lock at random
	}
	b.pubMu.Lock()
	l := b.pubLocks[channel]
	if l == nil {
		l = &chanLock{sem: make(chan struct{}, 1)}
		b.pubLocks[channel] = l
	}
	l.refs++
	b.pubMu.Unlock()
	select {
	case l.sem <- struct{}{}:
		return l, nil
	case <-ctx.Done():
		b.release(channel, l)
		return nil, ctx.Err()
	}
}

func (b *Broker) unlockChannel(channel string, l *chanLock) {
	<-l.sem
	b.release(channel, l)
}

func (b *Broker) release(channel string, l *chanLock) {
	b.pubMu.Lock()
	if l.refs--; l.refs == 0 {
		delete(b.pubLocks, channel)
	}
	b.pubMu.Unlock()
}

func (b *Broker) cachedTip(channel string) (tip, bool) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	t, ok := b.tips[channel]
	return t, ok
}

func (b *Broker) setTip(channel string, t tip) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if _, ok := b.tips[channel]; !ok && len(b.tips) >= maxTips {
		for k := range b.tips { // evict one at random
			delete(b.tips, k)
			break
		}
	}
	b.tips[channel] = t
}

func (b *Broker) dropTip(channel string) {
	b.pubMu.Lock()
	delete(b.tips, channel)
	b.pubMu.Unlock()
}

// bound gives ctx the request timeout when it has no deadline, and ends it
// when the connection to the server is lost, so that a request in flight
// then fails at once (as unavailable) instead of at its timeout.
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
func (b *Broker) connLost() {
	b.connMu.Lock()
	b.connEnd()
	b.connMu.Unlock()
}

// connBack starts a new connection lifetime after a reconnection.
func (b *Broker) connBack() {
	b.connMu.Lock()
	b.connEnd()
	b.conn, b.connEnd = context.WithCancel(b.life)
	b.connMu.Unlock()
}

// fail wraps err for operation op, adding broker.ErrUnavailable when the
// server cannot be reached or cannot answer now.
func (b *Broker) fail(op string, err error) error {
	if b.closed.Load() && !errors.Is(err, broker.ErrClosed) {
		return fmt.Errorf("nats broker: %s: %w: %w", op, broker.ErrClosed, err)
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrClosed) {
		return fmt.Errorf("nats broker: %s: %w", op, err)
	}
	if b.unavailable(err) {
		return fmt.Errorf("nats broker: %s: %w: %w", op, broker.ErrUnavailable, err)
	}
	return fmt.Errorf("nats broker: %s: %w", op, err)
}

// connected returns an error wrapping broker.ErrUnavailable (or
// broker.ErrClosed) for operation op when the connection is known not to be
// up: a request sent now would only wait for its timeout.
func (b *Broker) connected(op string) error {
	st := b.nc.Status()
	switch {
	case st == gonats.CONNECTED:
		return nil
	case b.closed.Load():
		return fmt.Errorf("nats broker: %s: %w", op, broker.ErrClosed)
	default:
		return fmt.Errorf("nats broker: %s: %w: connection %s", op, broker.ErrUnavailable, st)
	}
}

func (b *Broker) unavailable(err error) bool {
	if !b.nc.IsConnected() {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 503 {
		return true
	}
	for _, target := range []error{
		gonats.ErrConnectionClosed, gonats.ErrConnectionReconnecting, gonats.ErrConnectionDraining,
		gonats.ErrReconnectBufExceeded, gonats.ErrNoServers, gonats.ErrTimeout, gonats.ErrNoResponders,
		jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
		context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// JetStream error codes the broker reacts to.
const (
	codeStreamNotMatch        = 10060 // Nats-Expected-Stream names another stream
	codeStreamSubjectOverlap  = 10065 // another stream has these subjects
	codeWrongLastSequence     = 10071 // Nats-Expected-Last-Subject-Sequence failed
	codeWrongLastSequenceRepl = 10164 // the same, on replicated streams of newer servers
)

func apiCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

// isConflict reports whether a conditional write lost the race for the
// channel's next offset.
func isConflict(err error) bool {
	c := apiCode(err)
	return c == codeWrongLastSequence || c == codeWrongLastSequenceRepl
}

// isStreamGone reports whether err means the stream the broker uses no
// longer exists (or was replaced), so it must be looked up again.
func isStreamGone(err error) bool {
	return err != nil && (errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, gonats.ErrStreamNotFound) || // from the key-value watcher
		errors.Is(err, gonats.ErrNoStreamResponse) ||
		apiCode(err) == codeStreamNotMatch)
}

// backoff returns a jittered pause before publish attempt n, growing to
// 50 ms, so that publishers on several nodes that keep colliding spread out.
func backoff(n int) time.Duration {
	d := min(time.Millisecond<<min(n-3, 6), 50*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
