package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// Redis Cluster: sharded Pub/Sub over one connection per master.
//
// A subscription lives on the shard of the master that serves its slot
// (subscription.home). The shard's loop owns the connection: it connects,
// SSUBSCRIBEs every subscription it carries and catches each up, then waits
// for the connection to break or for work: subscriptions moved to it
// (pending) and subscriptions its master dropped because their slot moved
// (lost). What a master answers with MOVED, and what a broken connection's
// master no longer serves, goes to the shard of the new master, which
// subscribes it and fills from history what it missed. Delivery is the
// same as for a single Redis (onMessage, offer, catchUp), so a
// channel briefly subscribed on two masters delivers each publication once.
//
// Locks: a channel's stripe, then Broker.mu, then subscription.mu; Broker.mu
// is never held while delivering or talking to Redis.

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// slotTable maps each hash slot to the address of the master serving it, as
// last learned from the cluster.
type slotTable struct {
	owner [clusterSlots]uint16 // 1 + index in addrs; 0 when not known
	addrs []string
}

// get returns the address of slot's master, or "" when not known.
func (t *slotTable) get(slot uint16) string {
	if i := t.owner[slot]; i > 0 {
		return t.addrs[i-1]
	}
	return ""
}

// set records addr as the master of the slots lo to hi.
func (t *slotTable) set(lo, hi uint16, addr string) {
	i := slices.Index(t.addrs, addr)
	if i < 0 {
		t.addrs = append(t.addrs, addr)
		i = len(t.addrs) - 1
	}
	for s := int(lo); s <= int(hi); s++ {
		t.owner[s] = uint16(i + 1)
	}
}

// serves reports whether addr serves a slot.
func (t *slotTable) serves(addr string) bool {
	i := slices.Index(t.addrs, addr)
	return i >= 0 && slices.Contains(t.owner[:], uint16(i+1))
}

// shard is the node's Pub/Sub connection to one master of a Redis Cluster,
// kept by its own goroutine (shardLoop).
type shard struct {
	addr string
	wake chan struct{} // 1-buffered: pending or lost subscriptions to handle
	up   chan struct{} // closed once the first connection attempt has ended

	// Guarded by Broker.mu.
	conn    rueidis.DedicatedClient  // the live connection, nil while down
	subs    map[string]*subscription // the subscriptions it carries, by Pub/Sub name
	pending map[string]*subscription // of subs: to subscribe on the live connection
	lost    map[string]*subscription // of subs: unsubscribed by the master (slot moved)
}

// kick wakes the shard's loop.
func (sh *shard) kick() {
	select {
	case sh.wake <- struct{}{}:
	default:
	}
}

// slotOf returns the hash slot of a key or shard channel name, as the
// client computes it to route commands.
func (b *Broker) slotOf(name string) uint16 {
	cmd := b.client.B().Spublish().Channel(name).Message("").Build()
	return cmd.Slot() & (clusterSlots - 1)
}

// movedTo returns the address of a MOVED redirection.
func movedTo(err error) (string, bool) {
	if re, ok := rueidis.IsRedisErr(err); ok {
		return re.IsMoved()
	}
	return "", false
}

// refreshSlots replaces the slot map with that of the first node that
// answers CLUSTER SLOTS. (CLUSTER SHARDS would do too, but Redis 7 can
// report a stale topology there after a failover.)
func (b *Broker) refreshSlots(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var errs []error
	for addr, node := range b.client.Nodes() {
		nctx, ncancel := context.WithTimeout(ctx, 2*time.Second)
		t, err := readSlots(nctx, node, addr)
		ncancel()
		if err == nil {
			b.mu.Lock()
			b.slots = *t
			b.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("read the cluster's slot map: %w", errors.Join(errs...))
}

// readSlots asks the node at addr for the slot map.
func readSlots(ctx context.Context, node rueidis.Client, addr string) (*slotTable, error) {
	ranges, err := node.Do(ctx, node.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	t := new(slotTable)
	for _, r := range ranges {
		f, err := r.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("bad CLUSTER SLOTS entry: %v", err)
		}
		lo, err1 := f[0].AsInt64()
		hi, err2 := f[1].AsInt64()
		master, err3 := f[2].ToArray()
		if err := errors.Join(err1, err2, err3); err != nil || len(master) < 2 || lo < 0 || hi >= clusterSlots || lo > hi {
			return nil, fmt.Errorf("bad CLUSTER SLOTS entry: %v", err)
		}
		host, _ := master[0].ToString()
		port, err := master[1].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("bad CLUSTER SLOTS entry: %w", err)
		}
		if host == "" || host == "?" {
			// The endpoint is the address the node was reached at.
			host, _, _ = net.SplitHostPort(addr)
		}
		t.set(uint16(lo), uint16(hi), net.JoinHostPort(host, strconv.FormatInt(port, 10)))
	}
	return t, nil
}

// shardLocked returns the shard of the master at addr, starting it when
// there is none. b.mu must be held.
func (b *Broker) shardLocked(addr string) (*shard, error) {
	if sh := b.shards[addr]; sh != nil {
		return sh, nil
	}
	if b.closed.Load() {
		return nil, broker.ErrClosed
	}
	if b.loopCtx == nil {
		return nil, errors.New("not started")
	}
	sh := &shard{
		addr:    addr,
		wake:    make(chan struct{}, 1),
		up:      make(chan struct{}),
		subs:    make(map[string]*subscription),
		pending: make(map[string]*subscription),
		lost:    make(map[string]*subscription),
	}
	b.shards[addr] = sh
	b.shardWG.Add(1)
	go b.shardLoop(b.loopCtx, sh)
	return sh, nil
}

// shardFor returns the shard of the master that serves slot, once it has
// tried to connect.
func (b *Broker) shardFor(ctx context.Context, slot uint16) (*shard, error) {
	b.mu.RLock()
	addr := b.slots.get(slot)
	b.mu.RUnlock()
	if addr == "" {
		if err := b.refreshSlots(ctx); err != nil {
			return nil, fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
		}
		b.mu.RLock()
		addr = b.slots.get(slot)
		b.mu.RUnlock()
		if addr == "" {
			return nil, fmt.Errorf("%w: no master serves slot %d", broker.ErrUnavailable, slot)
		}
	}
	b.mu.Lock()
	sh, err := b.shardLocked(addr)
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case <-sh.up:
		return sh, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// attachLocked makes sh carry s. b.mu must be held.
func (b *Broker) attachLocked(s *subscription, name string, sh *shard) {
	if s.home != sh {
		b.detachLocked(s, name)
	}
	sh.subs[name] = s
	s.home = sh
}

// detachLocked takes s off its shard. b.mu must be held.
func (b *Broker) detachLocked(s *subscription, name string) {
	if h := s.home; h != nil {
		delete(h.subs, name)
		delete(h.pending, name)
		delete(h.lost, name)
		s.home = nil
	}
}

// assignLocked moves s to the shard of the master at addr and has that
// shard subscribe it. b.mu must be held.
func (b *Broker) assignLocked(s *subscription, name, addr string) {
	sh, err := b.shardLocked(addr)
	if err != nil {
		return // closing
	}
	b.attachLocked(s, name, sh)
	sh.pending[name] = s
	sh.kick()
}

// subscribeCluster is Subscribe in a cluster: it subscribes on the
// connection to the channel's master, following a MOVED answer to the new
// master at most twice.
func (b *Broker) subscribeCluster(ctx context.Context, channel, name string) error {
	b.mu.RLock()
	_, ok := b.subs[name]
	b.mu.RUnlock()
	if ok {
		return nil
	}
	s := &subscription{channel: channel, slot: b.slotOf(name)}
	done := false
	defer func() {
		if !done {
			s.leave() // a filler it may have started delivers nothing
		}
	}()
	var why error
	for attempt := 0; attempt < 3; attempt++ {
		sh, err := b.shardFor(ctx, s.slot)
		if err != nil {
			return b.wrap("subscribe to "+channel, err)
		}
		b.mu.Lock()
		if b.shards[sh.addr] != sh {
			b.mu.Unlock()
			why = errors.New("master left the cluster")
			continue
		}
		conn := sh.conn
		if conn == nil {
			b.mu.Unlock()
			return fmt.Errorf("redis broker: subscribe to %s: %w: no Pub/Sub connection to cluster master %s", channel, broker.ErrUnavailable, sh.addr)
		}
		b.subs[name] = s
		b.attachLocked(s, name, sh)
		b.mu.Unlock()

		moved, err := b.subscribeShard(ctx, conn, []*subscription{s})
		if err == nil && len(moved) == 0 {
			done = true
			return nil
		}
		b.mu.Lock()
		if b.subs[name] == s {
			delete(b.subs, name)
		}
		b.detachLocked(s, name)
		if addr, ok := moved[s]; ok {
			b.slots.set(s.slot, s.slot, addr)
			why = fmt.Errorf("slot %d moved to %s", s.slot, addr)
		}
		b.mu.Unlock()
		if err != nil {
			// As for a single Redis: the SSUBSCRIBE may have gone through.
			uctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Do(uctx, conn.B().Sunsubscribe().Channel(name).Build()).Error()
			cancel()
			return b.wrap("subscribe to "+channel, err)
		}
	}
	return fmt.Errorf("redis broker: subscribe to %s: %w: %w", channel, broker.ErrUnavailable, why)
}

// unsubscribeCluster is Unsubscribe in a cluster.
func (b *Broker) unsubscribeCluster(ctx context.Context, channel, name string) error {
	b.mu.Lock()
	s := b.subs[name]
	delete(b.subs, name)
	var conn rueidis.DedicatedClient
	if s != nil {
		if s.home != nil {
			conn = s.home.conn
		}
		b.detachLocked(s, name)
	}
	b.mu.Unlock()
	if s != nil {
		s.leave()
	}
	if conn == nil {
		return nil // a new connection subscribes only to what its shard carries
	}
	err := conn.Do(ctx, conn.B().Sunsubscribe().Channel(name).Build()).Error()
	if _, ok := movedTo(err); ok {
		return nil // the slot moved: the master has left the channel already
	}
	if err != nil {
		return b.wrap("unsubscribe from "+channel, err)
	}
	return nil
}

// subscribeShard subscribes conn, a connection to one master, to the
// channels of subs and catches each up to its position, like subscribeOn.
// It returns the subscriptions the master redirected elsewhere, with the
// address of their master.
func (b *Broker) subscribeShard(ctx context.Context, conn rueidis.DedicatedClient, subs []*subscription) (map[*subscription]string, error) {
	const batch = 256
	moved := make(map[*subscription]string)
	for len(subs) > 0 {
		n := min(len(subs), batch)
		if err := b.subscribeShardBatch(ctx, conn, subs[:n], moved); err != nil {
			return moved, err
		}
		subs = subs[n:]
	}
	return moved, nil
}

// subscribeShardBatch is one step of subscribeShard, bounded by opTimeout.
// A shard channel is subscribed one per command, as each may have its own
// slot; the positions are read after all of them, on the same connection,
// for the reason given at subscribeOn.
func (b *Broker) subscribeShardBatch(ctx context.Context, conn rueidis.DedicatedClient, subs []*subscription, moved map[*subscription]string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	cmds := make(rueidis.Commands, 0, 2*len(subs))
	for _, s := range subs {
		cmds = append(cmds, conn.B().Ssubscribe().Channel(b.pubName(s.channel)).Build())
	}
	for _, s := range subs {
		cmds = append(cmds, conn.B().Hmget().Key(b.metaKey(s.channel)).Field("offset", "epoch").Build())
	}
	res := conn.DoMulti(ctx, cmds...)
	for i, s := range subs {
		err := res[i].Error()
		if err == nil {
			err = res[len(subs)+i].Error()
		}
		if addr, ok := movedTo(err); ok {
			moved[s] = addr
			continue
		}
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		epoch, offset, err := parsePosition(res[len(subs)+i])
		if err != nil {
			return err
		}
		b.catchUp(s, epoch, offset)
	}
	return nil
}

// shardUnsubscribed is told by the shard's connection that its master
// unsubscribed it from a channel: the answer to an Unsubscribe, or the
// channel's slot moved to another master. A channel still wanted is lost.
// It runs on the connection's reader and must not block.
func (b *Broker) shardUnsubscribed(sh *shard, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.subs[name]; s != nil && s.home == sh {
		sh.lost[name] = s
		sh.kick()
	}
}

// shardLoop keeps the connection of sh: it connects, subscribes every
// channel the shard carries, catches them up and serves the shard's work
// until the connection breaks, then follows the cluster's slot map and
// starts over with backoff, until ctx is cancelled or the master serves no
// slot and carries no subscription any more.
func (b *Broker) shardLoop(ctx context.Context, sh *shard) {
	defer b.shardWG.Done()
	log := b.log.With("master", sh.addr)
	var client rueidis.Client // connections to this master only
	defer func() {
		if client != nil {
			client.Close()
		}
	}()
	first := true
	down := false
	backoff := minBackoff
	for {
		var err error
		if client == nil {
			o := b.nodeOpts
			o.InitAddress = []string{sh.addr}
			if client, err = rueidis.NewClient(o); err != nil && client != nil {
				client.Close()
				client = nil
			}
		}
		if err == nil {
			conn, release := client.Dedicate()
			wait := conn.SetPubSubHooks(rueidis.PubSubHooks{
				OnMessage: b.onMessage,
				OnSubscription: func(m rueidis.PubSubSubscription) {
					if m.Kind == "sunsubscribe" {
						b.shardUnsubscribed(sh, m.Channel)
					}
				},
			})
			err = b.shardConnect(ctx, sh, conn)
			if err == nil {
				if first {
					close(sh.up)
					first = false
				}
				if down {
					log.Info("Pub/Sub connection to cluster master restored")
					down = false
				}
				backoff = minBackoff
				err = b.shardServe(ctx, sh, conn, wait)
			}
			b.mu.Lock()
			sh.conn = nil
			b.mu.Unlock()
			release()
		}
		if first {
			close(sh.up)
			first = false
		}
		if ctx.Err() != nil {
			return
		}
		if !down {
			log.Warn("Pub/Sub connection to cluster master lost; reconnecting", "err", b.wrap("Pub/Sub connection", err))
			down = true
		}
		if b.rehome(ctx, sh) {
			log.Info("cluster master serves no slot any more; its connection is dropped")
			return
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxShardBackoff)
	}
}

// maxShardBackoff caps the retries of a shard's connection lower than
// those of a single Redis: each retry also re-reads the slot map, which is
// how the subscriptions of a failed master find its promoted replica.
const maxShardBackoff = time.Second

// shardConnect makes conn the shard's live connection and subscribes it
// to every channel the shard carries.
func (b *Broker) shardConnect(ctx context.Context, sh *shard, conn rueidis.DedicatedClient) error {
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	err := conn.Do(pctx, conn.B().Ping().Build()).Error()
	cancel()
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	b.mu.Lock()
	sh.conn = conn
	for name, s := range sh.subs {
		sh.pending[name] = s
	}
	b.mu.Unlock()
	return b.shardWork(ctx, sh, conn)
}

// shardServe waits until the shard's connection breaks, handling the
// shard's work meanwhile.
func (b *Broker) shardServe(ctx context.Context, sh *shard, conn rueidis.DedicatedClient, wait <-chan error) error {
	for {
		select {
		case err := <-wait:
			if err == nil {
				err = errors.New("connection closed")
			}
			return err
		case <-sh.wake:
			if err := b.shardWork(ctx, sh, conn); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// shardWork sends the shard's lost subscriptions to the masters that now
// serve their slots, and subscribes conn to the pending ones. An error
// means the connection cannot be trusted any more.
func (b *Broker) shardWork(ctx context.Context, sh *shard, conn rueidis.DedicatedClient) error {
	b.mu.Lock()
	lost := len(sh.lost) > 0
	b.mu.Unlock()
	if lost {
		if err := b.refreshSlots(ctx); err != nil {
			b.log.Warn("cannot read the cluster's slot map", "err", err)
		}
		b.mu.Lock()
		for name, s := range sh.lost {
			delete(sh.lost, name)
			addr := b.slots.get(s.slot)
			if addr == "" {
				addr = sh.addr // subscribing here again tells where it went
			}
			b.assignLocked(s, name, addr)
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	pending := make([]*subscription, 0, len(sh.pending))
	for name, s := range sh.pending {
		pending = append(pending, s)
		delete(sh.pending, name)
	}
	b.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	moved, err := b.subscribeShard(ctx, conn, pending)
	if len(moved) > 0 {
		b.mu.Lock()
		for s, addr := range moved {
			b.slots.set(s.slot, s.slot, addr)
			if name := b.pubName(s.channel); b.subs[name] == s && s.home == sh {
				b.assignLocked(s, name, addr)
			}
		}
		b.mu.Unlock()
	}
	return err
}

// rehome reads the slot map after sh's connection was lost and moves the
// subscriptions whose slots another master serves now (after a failover or
// resharding) to that master's shard. It reports whether sh is done: its
// address serves no slot and it carries no subscription.
func (b *Broker) rehome(ctx context.Context, sh *shard) bool {
	if err := b.refreshSlots(ctx); err != nil {
		return false // the cluster is unreachable: keep trying this master
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, s := range sh.subs {
		if addr := b.slots.get(s.slot); addr != "" && addr != sh.addr {
			b.assignLocked(s, name, addr)
		}
	}
	if len(sh.subs) == 0 && !b.slots.serves(sh.addr) {
		delete(b.shards, sh.addr)
		return true
	}
	return false
}
