package nats

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
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
	// IdempotencyMaxWindow is the longest idempotency window publications
	// will ask for. The history stream's duplicate window is set to it (at
	// least JetStream's default of 2m, at most HistoryMaxAge), so that a
	// repeat of a key whose first publisher died between storing the
	// publication and recording its offset is still recognised for the
	// whole window (see "Idempotency" in the package documentation).
	// JetStream remembers the id of each keyed publication for that long.
	// Default 2m; longer than 24h is cut to 24h.
	IdempotencyMaxWindow time.Duration
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
	// WebhookAckWait is how long a webhook fact read by a sender that
	// neither acknowledges it nor keeps holding it (it died) waits before
	// the next sender gets it; a new sender waits this long before reading
	// when facts are outstanding, so that it cannot pass them. Set it to
	// the webhook lease TTL. Default 15s.
	WebhookAckWait time.Duration
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
	if o.WebhookAckWait <= 0 {
		o.WebhookAckWait = 15 * time.Second
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
	o.IdempotencyMaxWindow = min(max(o.IdempotencyMaxWindow, 2*time.Minute), idemMaxWindow)
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
