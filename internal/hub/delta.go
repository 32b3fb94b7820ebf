package hub

import (
	"sync"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/fossil"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Delta compression (a subscribe with "delta":"fossil"): a delta
// subscriber receives every publication's data as a JSON string, and,
// when it received the publication just before, the fossil delta from
// that one instead, if smaller. The work is done once per publication per
// channel, not per subscriber: the fan-out gives every delta subscriber
// the same deltaPub, which encodes the string form and the delta at most
// once each, on first use, and shares the bytes (so the WebSocket
// transport's compression cache also works once for all).

// deltaMode is a subscription's delta state.
type deltaMode uint8

const (
	deltaOff   deltaMode = iota // publications go whole, as they are
	deltaOn                     // the client does not hold publication last: the next goes whole
	deltaHolds                  // the client holds publication last: the next may be a delta
)

// forget: the next publication goes whole (no change when off).
func (d *deltaMode) forget() {
	if *d == deltaHolds {
		*d = deltaOn
	}
}

// hold: the client holds publication last (no change when off).
func (d *deltaMode) hold() {
	if *d == deltaOn {
		*d = deltaHolds
	}
}

// channelDelta is a channel's last publication on this node, the source
// of the next publication's delta. It exists from the channel's first
// delta subscriber until it has no subscriber at all; while it exists,
// every publication of the channel is prepared for delta subscribers.
type channelDelta struct {
	mu     sync.Mutex
	epoch  string
	offset uint64
	data   []byte // nil when not valid UTF-8: no delta is made from it
}

// next records pub as the channel's last publication and returns the data
// of the one before it (offset-1, same epoch), or nil when this node did
// not see it or it is not valid UTF-8.
func (cd *channelDelta) next(pub broker.Publication, epoch string, valid bool) (prev []byte) {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	if cd.epoch == epoch && cd.offset+1 == pub.Offset {
		prev = cd.data
	}
	if cd.epoch != epoch || pub.Offset > cd.offset {
		cd.epoch, cd.offset, cd.data = epoch, pub.Offset, nil
		if valid {
			cd.data = pub.Data
		}
	}
	return prev
}

// seed records pub, read from history by a recovering subscribe, as the
// channel's last publication, unless a later one (or one of another
// epoch) was recorded already: the first live publication after the
// recovered ones can then be a delta.
func (cd *channelDelta) seed(pub broker.Publication, epoch string) {
	cd.mu.Lock()
	defer cd.mu.Unlock()
	fresh := cd.epoch == "" && cd.offset == 0
	if !fresh && (cd.epoch != epoch || pub.Offset <= cd.offset) {
		return
	}
	cd.epoch, cd.offset, cd.data = epoch, pub.Offset, nil
	if utf8.Valid(pub.Data) {
		cd.data = pub.Data
	}
}

// seedDelta seeds channel's last publication (channelDelta.seed). It
// takes the shard's lock, so it must not be called under a
// subscription's.
func (h *Hub) seedDelta(channel, epoch string, pub broker.Publication) {
	sh := h.shardOf(channel)
	sh.mu.RLock()
	cd := sh.deltas[channel]
	sh.mu.RUnlock()
	if cd != nil {
		cd.seed(pub, epoch)
	}
}

// deltaPub is one publication as delta subscribers receive it, shared by
// all of a channel's delta subscribers on the node.
type deltaPub struct {
	channel string
	pub     broker.Publication
	prev    []byte // data of publication pub.Offset-1, nil when unknown
	at      int64

	fullOnce sync.Once
	full     []byte // {"channel","data":"<data as a string>","offset"}

	deltaOnce sync.Once
	delta     []byte // {...,"data":"<delta>",...,"delta":true}, nil when not smaller
}

// newDeltaPub prepares pub for the delta subscribers of channel, whose
// last publication is cd. Called by the fan-out with the channel's shard
// read-locked.
func newDeltaPub(cd *channelDelta, channel string, pub broker.Publication, epoch string, at int64) *deltaPub {
	dp := &deltaPub{channel: channel, pub: pub, at: at}
	dp.prev = cd.next(pub, epoch, utf8.Valid(pub.Data))
	return dp
}

// fullMessage is the publication whole, its data as a JSON string.
func (dp *deltaPub) fullMessage() Message {
	dp.fullOnce.Do(func() {
		dp.full = protocol.AppendPublicationString(make([]byte, 0, len(dp.channel)+len(dp.pub.Data)+64), dp.channel, dp.pub.Data, dp.pub.Offset, false)
	})
	return Message{Data: dp.full, At: dp.at, Channel: dp.channel, Offset: dp.pub.Offset}
}

// deltaMessage is the publication as a delta from the one before it, or
// ok false when there is no delta or it is not smaller than the data.
func (dp *deltaPub) deltaMessage() (m Message, ok bool) {
	if dp.prev == nil {
		return Message{}, false
	}
	dp.deltaOnce.Do(func() {
		d := fossil.Create(dp.prev, dp.pub.Data)
		if len(d) < len(dp.pub.Data) {
			dp.delta = protocol.AppendPublicationString(make([]byte, 0, len(dp.channel)+len(d)+80), dp.channel, d, dp.pub.Offset, true)
		}
	})
	if dp.delta == nil {
		return Message{}, false
	}
	return Message{Data: dp.delta, At: dp.at, Channel: dp.channel, Offset: dp.pub.Offset}, true
}

// deltaLocked turns the publication m, about to be queued, into what the
// delta subscriber sub receives: the delta when the client holds the
// publication before it, else the whole data. Called with sub.mu held by
// deliverLiveLocked, after its offset checks and before it moves last to
// m.Offset: the offsets in between were skipped.
func (sub *subscription) deltaLocked(prev uint64, m Message) Message {
	holds := sub.dmode == deltaHolds && prev+1 == m.Offset
	sub.dmode = deltaHolds
	dp := m.dp
	if dp == nil {
		// Not prepared for delta subscribers, which cannot happen: the
		// fan-out prepares every publication of a channel that has one.
		// Sent as it is, with no delta after it (the SDK takes it).
		sub.dmode = deltaOn
		return m
	}
	met := sub.sess.hub.metrics
	if holds {
		if dm, ok := dp.deltaMessage(); ok {
			met.DeltaSent.Inc()
			return dm
		}
	}
	met.DeltaWhole.Inc()
	return dp.fullMessage()
}

// addDeltaLocked makes channel keep its last publication, for sub's
// deltas. Called with sh.mu held.
func (sh *shard) addDeltaLocked(sub *subscription) {
	if sub.dmode == deltaOff || sh.deltas[sub.channel] != nil {
		return
	}
	if sh.deltas == nil {
		sh.deltas = make(map[string]*channelDelta)
	}
	sh.deltas[sub.channel] = &channelDelta{}
}
