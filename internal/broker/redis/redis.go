// Package redis is the broker for several Switchboard nodes sharing one
// Redis (6.2 or newer), a Redis behind Sentinels, or a Redis Cluster (7.0
// or newer): publications fan out between nodes over Redis Pub/Sub,
// channel history lives in Redis Streams, and presence in Redis hashes
// whose entries expire, so that the clients of a dead node vanish.
//
// # Keys
//
// Every key and Pub/Sub channel name starts with Options.Prefix and carries
// the engine's channel name in braces, so that all of one channel's keys
// and its Pub/Sub channel share a Redis Cluster hash slot:
//
//	{prefix}:{channel}:meta             hash: offset, epoch, ttl (history TTL in ms)
//	{prefix}:{channel}:history          stream: entry id "offset-0", fields d (data), t (ms)
//	{prefix}:{channel}:pub              (shard) Pub/Sub channel: publications and events
//	{prefix}:{channel}:presence         hash: client id -> JSON ClientInfo
//	{prefix}:{channel}:presence-expiry  sorted set: client id scored by expiry (ms)
//	{prefix}:{channel}:idem:{key}       string: "offset:epoch" of the publication that
//	                                    used idempotency key {key}, expiring after the window
//	{prefix}:control                    Pub/Sub channel between the nodes (broker.Controller)
//
// Every script and multi-key command works on the keys of one channel, so
// none crosses slots in a cluster.
//
// # Offsets and epochs
//
// A Lua script publishes: it increments the channel's offset, appends the
// publication to the stream (trimmed to the history size), refreshes the
// keys' expiry and PUBLISHes it (SPUBLISH in a cluster), all atomically,
// so that Pub/Sub carries a channel's publications in offset order. Entries older than the history
// TTL are trimmed when history is read (and never returned), and a stream
// idle for its TTL expires whole. The epoch is stored beside the
// offset; when the meta key is missing (a new channel, an idle one that
// expired, or a Redis that lost its data) the script starts a new random
// epoch and drops any history left, so an offset never repeats within an
// epoch as long as Redis keeps what it acknowledged (see Options.URL).
//
// A publication with an idempotency key passes the key's name to the same
// script, which answers the remembered position instead of publishing when
// the key exists, and sets it otherwise: the check is atomic with the
// publication on every node, in a cluster too (the key has the channel's
// hash tag).
//
// # Delivery
//
// A node holds one dedicated Pub/Sub connection and is subscribed there to
// the channels it has local subscribers for. Deliveries of a channel reach
// the handler in offset order from one goroutine. The broker remembers the
// position it last delivered for each channel; when the connection is lost
// it reconnects with backoff, subscribes again and delivers from history
// what was published meanwhile. A publication that history no longer holds
// shows to the handler as a jump in offsets, and lost Redis data as a new
// epoch: the gap is never hidden.
//
// History is never read on the Pub/Sub connection's reader. A channel
// that sees a gap (an offset that is not the next one, or a position read
// after resubscribing that is ahead) gets one goroutine that reads the
// missing publications from history while what arrives for that channel
// meanwhile waits, in a bounded buffer, to be delivered after them; other
// channels keep flowing. When the buffer is full it is replaced by the
// position it reached, which is then read from history too.
//
// # Redis Cluster
//
// Whether Redis is a cluster is not configured: the client asks the server
// (see Options.URL). In a cluster a node uses sharded Pub/Sub: the publish
// script SPUBLISHes, and the node keeps one Pub/Sub connection per master,
// SSUBSCRIBEd there to the channels whose slots that master serves; the
// slot map comes from CLUSTER SLOTS. When a slot moves (resharding) its
// master unsubscribes the node from the slot's channels, and when a
// master fails its connection breaks; either way the node learns the
// slot's new master, subscribes there and delivers from history what was
// published meanwhile, exactly as after a lost connection to a single
// Redis. The control channel uses ordinary Pub/Sub, which a cluster
// delivers on every node, over one more connection.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/broker"
)

var (
	_ broker.Broker        = (*Broker)(nil)
	_ broker.PresenceStore = (*Broker)(nil)
)

// Options configure a Redis broker. Only URL is required.
type Options struct {
	// URL names the Redis: redis://[user:password@]host:port/db, or
	// rediss:// for TLS. Further addr=host:port parameters name more
	// servers to try at start. With ?master_set=NAME the host and the addr
	// parameters are Sentinels that find the primary of NAME. Otherwise,
	// when the server is a Redis Cluster node, the broker discovers the
	// cluster from it and works in cluster mode; name several masters
	// (redis://node1:6379/0?addr=node2:6379&addr=node3:6379) so that it
	// starts while one is down. A cluster has only database 0.
	//
	// History survives a Redis restart only as durably as Redis keeps it:
	// with appendfsync always nothing acknowledged is lost; with RDB
	// snapshots or appendfsync everysec a crash can roll a channel back
	// while keeping its epoch, and offsets after the rollback point would
	// then be given out twice.
	URL string
	// Prefix starts every key and Pub/Sub channel name, so that several
	// deployments can share one Redis. Default "switchboard". It must not
	// contain braces.
	Prefix string
	// IdleTTL is how long a channel's offset and epoch are kept after its
	// last publication, when that is longer than its history TTL. When they
	// expire the channel's next publication starts a new epoch, and clients
	// holding a position in the old one are told they cannot recover.
	// Default 24 hours.
	IdleTTL time.Duration
	// Logger receives connection losses and recoveries. Default: discard.
	Logger *slog.Logger
}

// defaults.
const (
	defaultPrefix  = "switchboard"
	defaultIdleTTL = 24 * time.Hour
	// defaultPresenceTTL applies when AddPresence is given no ttl.
	defaultPresenceTTL = time.Minute
	// opTimeout bounds the broker's own calls (resubscribing, filling a
	// gap), which have no caller context.
	opTimeout = 10 * time.Second
	// Reconnection backoff of the Pub/Sub connection.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Broker is a broker.Broker and a broker.PresenceStore on Redis. Create it
// with New; presence works right away, the Broker methods after Start.
type Broker struct {
	opts   Options
	client rueidis.Client
	log    *slog.Logger
	closed atomic.Bool

	handler broker.Handler // set by Start, read-only after

	// stripes serialise Subscribe and Unsubscribe of one channel, so that
	// their commands reach Redis in the order they were called. Each is a
	// 1-slot semaphore, so that a caller waiting for one gives up with
	// its context. Made by New.
	stripes [64]chan struct{}

	// cluster is set when Redis is a Redis Cluster (sharded Pub/Sub);
	// nodeOpts then connect to one of its masters. Read-only after New.
	cluster  bool
	nodeOpts rueidis.ClientOption

	mu sync.RWMutex
	// conn is the live Pub/Sub connection, nil while down: in a cluster it
	// carries only the control channel. Guarded by mu.
	conn rueidis.DedicatedClient
	subs map[string]*subscription // by Pub/Sub channel name. Guarded by mu.
	// In a cluster: the slot map, and the Pub/Sub connections to masters by
	// address. Guarded by mu.
	slots  slotTable
	shards map[string]*shard

	// loopCtx is the lifetime of the Pub/Sub loops, cancelled by Close
	// (with stopLoop). Set by Start.
	loopCtx  context.Context
	stopLoop context.CancelFunc // ends the Pub/Sub loops; set by Start
	loopDone chan struct{}      // closed when the Pub/Sub loop has returned
	shardWG  sync.WaitGroup     // the cluster's shard loops

	// Gap fillers (gap.go): their lifetime, cancelled by Close; fillMu
	// guards fillsStopped and adding to fillWG.
	fillCtx      context.Context
	cancelFills  context.CancelFunc
	fillMu       sync.Mutex
	fillsStopped bool
	fillWG       sync.WaitGroup
	fillSlots    chan struct{} // a token per history read in progress
	// gapItems bounds the messages that wait behind a gap, per channel.
	// Read-only after New; tests lower it.
	gapItems int

	// beforeFill, when set (by tests only, before Start), is called by a
	// gap filler before it reads history, so that a test can stall one
	// channel's fill: Redis cannot be made slow for one key only.
	beforeFill func(ctx context.Context, channel string)
}

// New connects to the Redis named by opts.URL. It fails, with an error
// wrapping broker.ErrUnavailable, when Redis cannot be reached.
func New(ctx context.Context, opts Options) (*Broker, error) {
	if opts.URL == "" {
		return nil, errors.New("redis broker: no URL")
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis broker: prefix %q contains a brace", opts.Prefix)
	}
	if opts.IdleTTL <= 0 {
		opts.IdleTTL = defaultIdleTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	co, err := rueidis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("redis broker: URL %s: %w", redact(opts.URL), err)
	}
	co.ClientName = "switchboard"
	co.DisableCache = true
	co.RetryDelay = retryDelay
	if dl, ok := ctx.Deadline(); ok && co.Dialer.Timeout == 0 {
		co.Dialer.Timeout = time.Until(dl)
	}
	client, err := rueidis.NewClient(co)
	if re, ok := rueidis.IsRedisErr(err); ok && co.SelectDB != 0 && strings.Contains(re.Error(), "cluster mode") {
		return nil, fmt.Errorf("redis broker: %s is a Redis Cluster, which has only database 0: %w", redact(opts.URL), err)
	}
	if err != nil {
		return nil, fmt.Errorf("redis broker: connect to %s: %w: %w", redact(opts.URL), broker.ErrUnavailable, err)
	}
	b := &Broker{
		opts:   opts,
		client: client,
		log:    opts.Logger.With("broker", "redis"),
		subs:   make(map[string]*subscription),
		shards: make(map[string]*shard),

		gapItems: defaultGapItems,
	}
	b.fillCtx, b.cancelFills = context.WithCancel(context.Background())
	b.fillSlots = make(chan struct{}, maxConcurrentFills)
	for i := range b.stripes {
		b.stripes[i] = make(chan struct{}, 1)
	}
	if client.Mode() == rueidis.ClientModeCluster {
		if co.SelectDB != 0 {
			client.Close()
			return nil, fmt.Errorf("redis broker: %s is a Redis Cluster, which has only database 0", redact(opts.URL))
		}
		b.cluster = true
		b.nodeOpts = co
		b.nodeOpts.ForceSingleClient = true
	}
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		client.Close()
		return nil, b.wrap("ping", err)
	}
	return b, nil
}

// retryDelay lets the client retry an idempotent command on a broken
// connection for about a second, long enough to replace the pooled
// connections a Redis restart leaves dead, and then fail, so that a call
// without a deadline cannot hang while Redis is down.
func retryDelay(attempts int, _ rueidis.Completed, _ error) time.Duration {
	if attempts > 6 {
		return -1
	}
	return time.Duration(attempts*attempts) * 10 * time.Millisecond
}

// redact hides the password of a Redis URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Start implements broker.Broker. It opens the Pub/Sub connection and waits
// for it (or ctx). When Redis cannot be reached it returns an error wrapping
// broker.ErrUnavailable, but goes on trying in the background: Subscribe
// works once it has succeeded. Close must be called either way.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if h == nil {
		return errors.New("redis broker: nil handler")
	}
	if b.handler != nil {
		return errors.New("redis broker: started twice")
	}
	b.handler = h
	loopCtx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	b.loopCtx = loopCtx
	b.mu.Unlock()
	b.stopLoop = cancel
	b.loopDone = make(chan struct{})
	if b.cluster {
		// Best effort: a Subscribe reads the map itself when it lacks it.
		if err := b.refreshSlots(ctx); err != nil {
			b.log.Warn("cannot read the cluster's slot map", "err", err)
		}
	}
	first := make(chan error, 1)
	go b.pubsubLoop(loopCtx, first)
	select {
	case err := <-first:
		return err
	case <-ctx.Done():
		return fmt.Errorf("redis broker: start: %w", ctx.Err())
	}
}

// Close implements broker.Broker. It ends the Pub/Sub connection and
// closes the client; later calls fail with broker.ErrClosed.
func (b *Broker) Close(ctx context.Context) error {
	// Set under mu: shard loops start under mu, so none starts after.
	b.mu.Lock()
	already := b.closed.Swap(true)
	b.mu.Unlock()
	if already {
		return nil
	}
	done := make(chan struct{})
	go func() {
		if b.stopLoop != nil {
			b.stopLoop()
			<-b.loopDone
			b.shardWG.Wait()
		}
		b.stopFills()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		b.cancelFills()
		b.client.Close()
		return fmt.Errorf("redis broker: close: %w", ctx.Err())
	}
	b.client.Close()
	return nil
}

// Ping reports whether Redis answers now and, once started, whether the
// node's Pub/Sub connection is up, so that the server can use it for
// readiness: a node without it could not subscribe new clients. It is not
// part of broker.Broker.
func (b *Broker) Ping(ctx context.Context) error {
	if b.closed.Load() {
		return fmt.Errorf("redis broker: ping: %w", broker.ErrClosed)
	}
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		return b.wrap("ping", err)
	}
	if b.handler == nil {
		return nil
	}
	b.mu.RLock()
	up := b.conn != nil
	down := ""
	for addr, sh := range b.shards {
		if sh.conn == nil && len(sh.subs) > 0 {
			down = addr
		}
	}
	b.mu.RUnlock()
	if !up {
		return fmt.Errorf("redis broker: ping: %w: Pub/Sub connection down", broker.ErrUnavailable)
	}
	if down != "" {
		return fmt.Errorf("redis broker: ping: %w: Pub/Sub connection to cluster master %s down", broker.ErrUnavailable, down)
	}
	return nil
}

// Key and channel names; see the package documentation.
func (b *Broker) base(channel string) string { return b.opts.Prefix + ":{" + channel + "}" }

func (b *Broker) metaKey(channel string) string    { return b.base(channel) + ":meta" }
func (b *Broker) historyKey(channel string) string { return b.base(channel) + ":history" }
func (b *Broker) pubName(channel string) string    { return b.base(channel) + ":pub" }

// idemKey is where an idempotency key of the channel is remembered: next
// to the channel's keys, with its hash tag, so that a cluster stores it on
// the channel's slot and the publish script may read and write it.
func (b *Broker) idemKey(channel, key string) string { return b.base(channel) + ":idem:" + key }

// Publish implements broker.Broker: one script call stores the publication
// and PUBLISHes (in a cluster SPUBLISHes) it to the subscribed nodes.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if b.closed.Load() {
		return broker.Position{}, fmt.Errorf("redis broker: publish: %w", broker.ErrClosed)
	}
	ttl := ms(opts.HistoryTTL)
	script := publishScript
	if b.cluster {
		script = spublishScript
	}
	keys := []string{b.metaKey(channel), b.historyKey(channel)}
	args := []string{
		b.pubName(channel),
		rueidis.BinaryString(data),
		strconv.Itoa(max(opts.HistorySize, 0)),
		strconv.FormatInt(ttl, 10),
		strconv.FormatInt(max(ttl, ms(b.opts.IdleTTL)), 10),
		newEpoch(),
	}
	if opts.IdempotencyKey != "" {
		keys = append(keys, b.idemKey(channel, opts.IdempotencyKey))
		args = append(args, strconv.FormatInt(max(ms(opts.IdempotencyWindow), 1), 10))
	}
	arr, err := script.Exec(ctx, b.client, keys, args).ToArray()
	if err != nil {
		return broker.Position{}, b.wrap("publish to "+channel, err)
	}
	if len(arr) != 3 {
		return broker.Position{}, fmt.Errorf("redis broker: publish to %s: script returned %d values", channel, len(arr))
	}
	offset, err1 := arr[0].AsInt64()
	epoch, err2 := arr[1].ToString()
	dup, err3 := arr[2].AsInt64()
	if err := errors.Join(err1, err2, err3); err != nil {
		return broker.Position{}, fmt.Errorf("redis broker: publish to %s: bad script result: %w", channel, err)
	}
	pos := broker.Position{Offset: uint64(offset), Epoch: epoch}
	if dup == 1 {
		return pos, fmt.Errorf("redis broker: publish to %s: %w", channel, broker.ErrDuplicate)
	}
	return pos, nil
}

// PublishEvent implements broker.Broker. Events travel on the channel's
// Pub/Sub channel with the publications, marked by their first byte.
func (b *Broker) PublishEvent(ctx context.Context, channel string, data []byte) error {
	if b.closed.Load() {
		return fmt.Errorf("redis broker: publish event: %w", broker.ErrClosed)
	}
	msg := make([]byte, 0, len(data)+1)
	msg = append(append(msg, kindEvent), data...)
	var cmd rueidis.Completed
	if b.cluster {
		cmd = b.client.B().Spublish().Channel(b.pubName(channel)).Message(rueidis.BinaryString(msg)).Build()
	} else {
		cmd = b.client.B().Publish().Channel(b.pubName(channel)).Message(rueidis.BinaryString(msg)).Build()
	}
	if err := b.client.Do(ctx, cmd).Error(); err != nil {
		return b.wrap("publish event to "+channel, err)
	}
	return nil
}

// History implements broker.Broker. Reading a channel Redis has no state
// for starts its epoch, so that the first publication continues from the
// position returned.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryResult, error) {
	if b.closed.Load() {
		return broker.HistoryResult{}, fmt.Errorf("redis broker: history: %w", broker.ErrClosed)
	}
	since, sinceEpoch, start := "0", "", "-"
	if q.Since != nil {
		since, sinceEpoch = "1", q.Since.Epoch
		start = strconv.FormatUint(q.Since.Offset+1, 10) + "-0"
	}
	reverse := "0"
	if q.Reverse {
		reverse = "1"
	}
	res := historyScript.Exec(ctx, b.client,
		[]string{b.metaKey(channel), b.historyKey(channel)},
		[]string{
			newEpoch(),
			strconv.FormatInt(ms(b.opts.IdleTTL), 10),
			since, sinceEpoch, start,
			strconv.Itoa(q.Limit),
			reverse,
		})
	r, mismatch, err := parseHistory(res)
	if err != nil {
		return broker.HistoryResult{}, b.wrap("history of "+channel, err)
	}
	if mismatch {
		return r, fmt.Errorf("redis broker: history of %s since epoch %q: %w", channel, sinceEpoch, broker.ErrEpochMismatch)
	}
	return r, nil
}

// parseHistory decodes the history script's reply: offset, epoch, epoch
// mismatch flag, server time (ms), history TTL (ms), then id, time and data
// of each entry.
func parseHistory(res rueidis.RedisResult) (broker.HistoryResult, bool, error) {
	arr, err := res.ToArray()
	if err != nil {
		return broker.HistoryResult{}, false, err
	}
	if len(arr) < 5 || (len(arr)-5)%3 != 0 {
		return broker.HistoryResult{}, false, fmt.Errorf("history script returned %d values", len(arr))
	}
	var r broker.HistoryResult
	offset, err1 := arr[0].AsInt64()
	epoch, err2 := arr[1].ToString()
	mismatch, err3 := arr[2].AsInt64()
	now, err4 := arr[3].AsInt64()
	ttl, err5 := arr[4].AsInt64()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return r, false, fmt.Errorf("bad history script result: %w", err)
	}
	r.Position = broker.Position{Offset: uint64(offset), Epoch: epoch}
	for i := 5; i < len(arr); i += 3 {
		id, err1 := arr[i].ToString()
		at, err2 := arr[i+1].AsInt64()
		data, err3 := arr[i+2].ToString()
		off, err4 := strconv.ParseUint(strings.TrimSuffix(id, "-0"), 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return r, false, fmt.Errorf("bad history entry: %w", err)
		}
		if ttl > 0 && at < now-ttl {
			continue // expired but not yet trimmed
		}
		r.Publications = append(r.Publications, broker.Publication{Offset: off, Data: []byte(data), Time: time.UnixMilli(at)})
	}
	return r, mismatch == 1, nil
}

// wrap adds the operation to err and marks failures to reach Redis (or a
// Redis that cannot serve now: loading, failing over) as
// broker.ErrUnavailable, and calls after Close as broker.ErrClosed.
func (b *Broker) wrap(op string, err error) error {
	if errors.Is(err, broker.ErrClosed) || errors.Is(err, broker.ErrUnavailable) {
		return fmt.Errorf("redis broker: %s: %w", op, err)
	}
	if b.closed.Load() && errors.Is(err, rueidis.ErrClosing) {
		return fmt.Errorf("redis broker: %s: %w", op, broker.ErrClosed)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("redis broker: %s: %w", op, err)
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		if re.IsLoading() || re.IsTryAgain() || re.IsClusterDown() ||
			strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "READONLY") {
			return fmt.Errorf("redis broker: %s: %w: %w", op, broker.ErrUnavailable, err)
		}
		return fmt.Errorf("redis broker: %s: %w", op, err)
	}
	return fmt.Errorf("redis broker: %s: %w: %w", op, broker.ErrUnavailable, err)
}

// ms converts d to whole milliseconds, rounding a positive d up.
func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

var epochEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newEpoch returns a random epoch name. The scripts use it only when they
// start a channel's stream.
func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on supported platforms
	return epochEncoding.EncodeToString(b[:])
}
