// Package nats is the broker for a cluster of Switchboard nodes sharing a
// NATS server (or cluster) with JetStream: publications fan out over core
// NATS subjects, history and recovery live in a JetStream stream, presence
// in a JetStream key-value bucket. A *Broker implements both
// broker.Broker and broker.PresenceStore over one connection.
//
// # Names
//
// With the default prefix "switchboard", channel c uses
//
//	switchboard.hist.<token(c)>   JetStream subject of c's stored publications
//	switchboard.pub.<token(c)>    core subject of c's live publications and events
//	SWITCHBOARD_<id>              the history stream (all channels), see below
//	switchboard_presence          the presence bucket, keys <token(c)>.<token(client)>
//	switchboard_idempotency       idempotency keys, <token(c)>.<token(key)> (see Idempotency)
//
// Channel names may hold bytes a subject token cannot ('.', '*', '>',
// spaces) or a key cannot (':', '#', '@', ...), so token keeps ASCII letters,
// digits and '-' and writes every other byte as '_' and two upper-case hex
// digits: "chat:room.1" becomes "chat_3Aroom_2E1". The mapping is injective
// and stays readable in the server's monitoring.
//
// # Offsets: a chain per channel in one stream
//
// One stream holds every channel's history, limited per subject
// (MaxMsgsPerSubject from Options.HistoryMaxSize, MaxAge from
// Options.HistoryMaxAge). The stream's sequence is global across channels,
// so each stored message carries its channel offset and epoch in headers,
// and the channel's newest stored message is the channel's counter.
// Publish reads that message (or a cached copy of it) and stores the next
// one, offset+1 and the same epoch, with two expectations the server checks
// atomically as it appends:
//
//   - Nats-Expected-Last-Subject-Sequence: the channel's newest message is
//     still the one that was read. A concurrent publisher on any node that
//     got there first makes the server refuse the write ("wrong last
//     sequence"); the loser re-reads and retries. So exactly one message is
//     stored per offset and offsets never repeat or skip within an epoch,
//     whatever the number of publishers and nodes.
//   - Nats-Expected-Stream: the stream is still the incarnation the message
//     was read from. Stream sequences restart when a stream is recreated, so
//     a cached "last sequence" from a lost stream could otherwise match by
//     chance in the new one; the stream name carries a random incarnation id
//     (SWITCHBOARD_<id>) to make such a write fail instead.
//
// # Epochs
//
// A channel's epoch is written into its first stored message and copied
// into every next one, so it lives exactly as long as the chain of offsets
// it names. When the chain is gone, because the stream lost its data (a
// server without persistence restarted, the stream was deleted and is
// recreated under a new id) or the channel was idle for HistoryMaxAge and
// its last message expired, the next write finds no previous message,
// starts at offset 1 and draws a new random epoch; a client holding a
// position of the old epoch is then told it cannot recover. After a restart
// that kept the data, the chain and its epoch are simply still there.
//
// A channel that never had a publication needs an epoch too (a subscriber
// receives its position), so History on such a channel stores a marker
// message with offset 0 that fixes the epoch; the first publication then
// continues that chain at offset 1. Markers never appear in history.
//
// # History
//
// History follows the memory broker's rules: a channel keeps its newest
// HistorySize publications (as asked by each publication; a smaller size
// drops the oldest, a larger one brings nothing back, 0 drops all), and
// none older than the HistoryTTL of the newest publication. Each stored
// message records the oldest offset kept as of itself (its floor) and its
// TTL, so the newest message alone says what History returns. The stream's
// limits are only an upper bound on what is stored; a background purge
// trims a channel to its history size now and then. A query reads the
// channel's newest message (the position, one request), then walks back a
// few messages through the previous-sequence header each message carries,
// or reads a longer range with a short-lived consumer bounded by the newest
// sequence, so that position and publications agree. Either way only
// messages linked into the chain from the newest one are returned.
//
// # Idempotency
//
// A publication with an idempotency key (broker.PublishOptions) must return
// the original offset to every repeat within its window, from any node, and
// be stored once however many repeats race. The stream's own
// de-duplication (Nats-Msg-Id) does not suffice alone: its window is one
// per stream (Options.IdempotencyMaxWindow), and a duplicate's acknowledgement carries
// the original's stream sequence, not its offset, and that message may
// have been trimmed since. So the broker keeps each key in a second bucket,
// <prefix>_idempotency (TTL 24 hours, the longest window), under
// <token(channel)>.<token(key)>, and uses the stream's de-duplication only
// for the race:
//
//  1. Create the key as a claim (an expiry only). Create fails when the key
//     exists; then read it.
//  2. Settled (it holds an offset and epoch) and not expired: return that
//     position as a duplicate; nothing is published. Claimed and not
//     expired: join that claim. Expired: replace it with a new claim,
//     conditional on its revision (a publisher that loses starts over). The
//     claim's revision is the key's generation.
//  3. Store the publication as usual, with Nats-Msg-Id
//     <token(channel)>.<token(key)>.<generation>. Every publisher of one
//     generation sends the same id, so the stream stores one message; the
//     others get an acknowledgement marked duplicate with the original's
//     sequence, read its offset from that message, and return it as a
//     duplicate without announcing anything.
//  4. The publisher whose message was stored settles the key: the claim,
//     conditional on its revision, becomes the offset and epoch. A repeat
//     that comes before that, or after its publisher died between storing
//     and settling, is answered by step 3.
//
// Expiry compares the nodes' clocks with the one that wrote the key, so
// nodes should keep their clocks in step (as for presence).
//
// # Delivery
//
// After the stream acknowledges a publication, the publishing node
// announces it on the channel's core subject with the same offset and
// epoch; nodes subscribe to that subject only while they have local
// subscribers. Core NATS was chosen over a JetStream consumer per channel
// and node because subscribe and unsubscribe then cost the server nothing
// durable, and fan-out stays as fast as plain NATS.
//
// Announcements from different publishers may arrive out of order, and one
// may be lost (its publisher died between storing and announcing, the
// subscriber's connection dropped). So each node delivers a channel's
// publications strictly in offset order, each once: it remembers the last
// offset it delivered, holds back publications that arrive ahead of a gap
// and, when the gap is not filled by Options.GapTimeout, reads the missing
// ones from history (what history no longer holds is skipped, and the
// subscriber sees the jump). Subscribe reads the channel's newest offset
// after its subscription is in place, so every later publication is
// delivered. After a reconnection each subscribed channel is caught up from
// history the same way.
//
// # Limits
//
//   - An announcement that is lost with nothing after it (the publisher died
//     between storing and announcing, and the channel has no further
//     publication) reaches subscribed nodes only with the channel's next
//     publication or after their next reconnection, both of which read the
//     gap from history; clients that reconnect recover it from history too.
//   - In a NATS cluster, a new subscription reaches the other servers a
//     moment after Subscribe returns; an announcement routed through another
//     server in that moment is read from history like a lost one.
//   - On replicated streams (Replicas > 1), servers have accepted two writes
//     with the same expected last sequence around a leader change
//     (nats-server issues 4320, 8469). History then only returns the
//     messages linked from the newest one, but two nodes may have delivered
//     different data for that offset. A single server or Replicas: 1 has no
//     such window.
//   - When a key's first publisher died between storing and settling the
//     key, a repeat is recognised by the stream's de-duplication, whose
//     window is Options.IdempotencyMaxWindow (cut to HistoryMaxAge): a
//     repeat later than that, but within a longer key window, publishes
//     again. A repeat whose original was both unsettled and already
//     trimmed from the stream fails with broker.ErrUnavailable rather than
//     guess.
//   - History of a channel that never had a publication stores a marker to
//     fix its epoch: one small message per channel read, which expires with
//     HistoryMaxAge like any other.
//
// # Presence
//
// Each (channel, client) is one key whose value holds the client's info and
// its expiry time (now + ttl). Presence reads the channel's keys with a
// watcher and leaves out expired entries, so the clients of a dead node
// disappear once their ttl has passed; the bucket's own TTL
// (Options.PresenceMaxAge) removes them from storage.
package nats
