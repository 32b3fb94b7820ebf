// Package longpoll serves clients that can make only plain HTTP requests:
// GET /poll answers with the publications of one or more channels after a
// cursor, waiting for the next one when there is none yet (long polling), or
// not waiting at all (polling, timeout=0).
//
// The cursor is all the state there is. It carries every polled channel's
// offset and a check of their epochs (see protocol.EncodeCursor), so any
// node can serve the next poll: no session survives between requests and no
// load balancer stickiness is needed. A poll first catches up from history
// with plain reads; only when nothing is new and the client asked to wait
// does it open a short-lived hub session, subscribed to the channels, whose
// transport collects what the session delivers. What was published between
// the reads and the subscriptions is read from history again, and offsets
// tell which live publications the answer already holds, so nothing is
// lost or delivered twice.
package longpoll

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/httpauth"
	"github.com/switchboardhq/switchboard/internal/httpx"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Options configure the polling endpoint. Zero fields take the defaults
// documented on them.
type Options struct {
	// MaxTimeout is the longest wait a poll may ask for, rounded down to
	// whole seconds. Default 60s.
	MaxTimeout time.Duration
	// DefaultTimeout is the wait of a poll that names no timeout, at most
	// MaxTimeout. Default 25s: shorter than the idle timeouts of common
	// proxies and load balancers.
	DefaultTimeout time.Duration
	// MaxChannels is the most channels one poll may name. Default, and
	// upper bound, protocol.MaxCursorChannels.
	MaxChannels int
	// MaxMessages is the most publications one answer carries; the cursor
	// then points at the last of them and the next poll goes on from there.
	// Default 1000, and at most the hub's history request limit.
	MaxMessages int
	// MaxBytes caps the publications of one answer, in bytes, in the same
	// way (an answer always has room for one). Default 1 MiB.
	MaxBytes int
	// BatchDelay is how long a waiting poll, woken by a publication, waits
	// for more before it answers, so that a busy channel costs fewer
	// requests. Default 10ms.
	BatchDelay time.Duration
	// WriteTimeout bounds writing an answer. Default 10s.
	WriteTimeout time.Duration
	// Guard checks each request's Host and Origin (allowed_hosts,
	// allowed_origins) and logs refusals; the server shares one among its
	// endpoints. Default: a Guard that allows same-origin and non-browser
	// requests to loopback names and IP addresses only.
	Guard *origin.Guard
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults(historyMaxLimit int) {
	if o.MaxTimeout < time.Second {
		o.MaxTimeout = 60 * time.Second
	}
	if o.DefaultTimeout <= 0 {
		o.DefaultTimeout = 25 * time.Second
	}
	o.DefaultTimeout = min(o.DefaultTimeout, o.MaxTimeout)
	if o.MaxChannels <= 0 || o.MaxChannels > protocol.MaxCursorChannels {
		o.MaxChannels = protocol.MaxCursorChannels
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = 1000
	}
	o.MaxMessages = max(1, min(o.MaxMessages, historyMaxLimit))
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 20
	}
	if o.BatchDelay <= 0 {
		o.BatchDelay = 10 * time.Millisecond
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Guard == nil {
		o.Guard = origin.New(origin.Config{Logger: o.Logger})
	}
}

// Handler is the http.Handler of GET /poll.
type Handler struct {
	hub  *hub.Hub
	opts Options
	lim  limits
	gate httpx.Gate
	log  *slog.Logger
}

// NewHandler returns the polling endpoint's handler.
func NewHandler(h *hub.Hub, opts Options) *Handler {
	opts.setDefaults(h.HistoryMaxLimit())
	return &Handler{
		hub:  h,
		opts: opts,
		lim: limits{
			maxChannels:    opts.MaxChannels,
			maxTimeout:     int(opts.MaxTimeout / time.Second),
			defaultTimeout: int(opts.DefaultTimeout / time.Second),
		},
		gate: httpx.Gate{Guard: opts.Guard, Method: http.MethodGet, Draining: h.Draining},
		log:  opts.Logger.With("component", "longpoll"),
	}
}

// ServeHTTP answers one poll.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !hd.gate.Admit(w, r) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		httpauth.WriteError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("malformed query string"))
		return
	}
	req, perr := parseRequest(q, hd.lim)
	if perr != nil {
		httpauth.WriteError(w, http.StatusBadRequest, perr)
		return
	}
	creds, perr := httpauth.Credentials(hd.hub, r)
	if perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	for _, ch := range req.channels {
		if perr := hd.hub.CanSubscribe(ch, creds.User(), ""); perr != nil {
			httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
			return
		}
	}
	rc := http.NewResponseController(w)
	// The server's read timeout would otherwise cut a wait longer than it
	// (net/http cancels the request when its background read times out).
	_ = rc.SetReadDeadline(time.Now().Add(req.timeout + hd.opts.WriteTimeout))

	st, err := hd.poll(r.Context(), req, hub.SessionInfo{RemoteAddr: r.RemoteAddr, Credentials: creds.Creds})
	if r.Context().Err() != nil {
		return // the client has gone; nobody reads an answer
	}
	if err != nil {
		hd.fail(w, err)
		return
	}
	_ = rc.SetWriteDeadline(time.Now().Add(hd.opts.WriteTimeout))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(st.encode())
}

// poll builds the answer to req.
func (hd *Handler) poll(ctx context.Context, req request, info hub.SessionInfo) (*state, error) {
	st := newState(req.channels, hd.opts)
	tops := make([]broker.Position, len(req.channels))
	for i, ch := range req.channels {
		pos, err := hd.hub.Position(ctx, ch)
		if err != nil {
			return nil, err
		}
		tops[i] = pos
		st.epochs[i], st.offsets[i] = pos.Epoch, pos.Offset
	}
	switch {
	case req.since != nil:
		// Each channel from the position the client gave (another
		// transport's, another poll's), or from now.
		for i, p := range req.since {
			switch {
			case p == nil:
			case p.Epoch != st.epochs[i]:
				st.lost(i, tops[i])
			default:
				st.offsets[i] = p.Offset // one past the top: catchUp finds it lost
			}
		}
		if err := hd.resume(ctx, st, tops, req.timeout, info); err != nil {
			return nil, err
		}
		return st, nil
	case req.cursor == nil:
		return st, nil // a first poll: only the cursor
	}
	if protocol.CursorCheck(req.channels, st.epochs) != req.cursor.check {
		// Some channel's epoch changed since the cursor was made: its
		// history was lost. The check covers all channels at once, so
		// it cannot say which; none can be trusted.
		for i := range req.channels {
			st.lost(i, tops[i])
		}
		return st, nil
	}
	copy(st.offsets, req.cursor.offsets)
	if err := hd.resume(ctx, st, tops, req.timeout, info); err != nil {
		return nil, err
	}
	return st, nil
}

// resume fills the answer from the positions in st: what history holds
// after them, else what comes within timeout.
func (hd *Handler) resume(ctx context.Context, st *state, tops []broker.Position, timeout time.Duration, info hub.SessionInfo) error {
	if err := hd.catchUp(ctx, st, tops); err != nil {
		return err
	}
	if st.done() || timeout == 0 {
		return nil
	}
	return hd.wait(ctx, st, timeout, info)
}

// catchUp adds to the answer what history holds after the cursor, channel
// by channel, until the answer is full.
func (hd *Handler) catchUp(ctx context.Context, st *state, tops []broker.Position) error {
	for i, ch := range st.channels {
		if len(st.msgs) >= st.maxMsgs {
			st.full = true
		}
		if st.full {
			return nil
		}
		since := broker.Position{Offset: st.offsets[i], Epoch: st.epochs[i]}
		if since.Offset == tops[i].Offset {
			continue // nothing new when we looked; the wait catches anything later
		}
		r, err := hd.hub.History(ctx, ch, &since, st.maxMsgs-len(st.msgs), false)
		if perr := (*protocol.Error)(nil); errors.As(err, &perr) && perr.Code == protocol.ErrEpochMismatch.Code {
			pos := r.Position
			if pos.Epoch == "" {
				if pos, err = hd.hub.Position(ctx, ch); err != nil {
					return err
				}
			}
			st.lost(i, pos)
			continue
		}
		if err != nil {
			return err
		}
		top, pubs := r.Position.Offset, r.Publications
		if since.Offset > top || since.Offset < top && (len(pubs) == 0 || pubs[0].Offset != since.Offset+1) {
			st.lost(i, r.Position) // history no longer holds what follows the cursor
			continue
		}
		for _, p := range pubs {
			st.offer(i, p.Offset, protocol.AppendPublication(nil, ch, p.Data, p.Offset))
		}
	}
	return nil
}

// wait subscribes a short-lived session to the channels and adds what it
// delivers to the answer, until something arrived (and BatchDelay has
// passed), timeout, ctx is done, or the session is closed.
//
// The session subscribes without a since position: what was published
// between catchUp's reads and the subscriptions is read from history once
// more (the subscription's Position tells whether anything was), and
// offer drops the live publications the answer already holds. The hub's
// own recovery is not used because it follows the namespace's recovery
// option, meant for reconnecting subscribers; for a poller every request
// is a resumption.
func (hd *Handler) wait(ctx context.Context, st *state, timeout time.Duration, info hub.SessionInfo) error {
	col := newCollector(st.maxMsgs - len(st.msgs))
	info.Ephemeral = true // a poll is not a member of the channel's presence
	sess := hd.hub.NewSession(col, info)
	defer sess.PeerGone()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()

	tops := make([]broker.Position, len(st.channels))
	for i, ch := range st.channels {
		res, perr := sess.Subscribe(ctx, ch, nil, nil)
		if perr != nil {
			if perr.Code < 0 { // the session ended meanwhile: answer as it is
				return nil
			}
			return perr
		}
		tops[i] = res.Position
		if res.Position.Epoch != st.epochs[i] {
			st.lost(i, res.Position)
		}
	}
	if err := hd.catchUp(ctx, st, tops); err != nil {
		return err
	}
	var batch <-chan time.Time // runs from the first publication on
	for last := false; ; {
		msgs, full := col.take()
		for _, m := range msgs {
			if i, ok := slices.BinarySearch(st.channels, m.Channel); ok {
				st.offer(i, m.Offset, m.Data)
			}
		}
		if last || full || st.urgent() {
			return nil
		}
		if len(st.msgs) > 0 && batch == nil {
			batch = time.After(hd.opts.BatchDelay)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-col.wake:
		case <-batch:
			last = true
		case <-deadline.C:
			last = true
		case <-col.closed: // shutdown or slow consumer: answer what arrived
			last = true
		}
	}
}

// fail answers an error: protocol errors with their status, anything else
// (the broker failed) as 503.
func (hd *Handler) fail(w http.ResponseWriter, err error) {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	hd.log.Warn("poll failed", "err", err)
	httpauth.WriteError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable.WithMessage("temporarily unavailable, poll again"))
}

// state is the answer being built: every polled channel's position, the
// publications to send and the channels whose position was lost.
type state struct {
	channels    []string // sorted
	offsets     []uint64 // per channel: the last publication in the answer
	epochs      []string // per channel: the epoch of offsets[i]
	unrecovered []bool   // per channel: the cursor's position was lost
	frozen      []bool   // per channel: a gap was seen; take no more
	msgs        [][]byte // encoded pushes
	bytes       int
	maxMsgs     int
	maxBytes    int
	full        bool // the answer has no room for the next publication
	gap         bool // some channel is frozen: answer now, recover next time
}

func newState(channels []string, o Options) *state {
	n := len(channels)
	return &state{
		channels:    channels,
		offsets:     make([]uint64, n),
		epochs:      make([]string, n),
		unrecovered: make([]bool, n),
		frozen:      make([]bool, n),
		maxMsgs:     o.MaxMessages,
		maxBytes:    o.MaxBytes,
	}
}

// offer adds publication offset of channel i (encoded as push) to the
// answer if it is the next one of that channel. Once a publication does not
// fit, no later one of any channel is added, so that the answer holds a
// prefix of each channel's stream and the cursor can point past it.
func (st *state) offer(i int, offset uint64, push []byte) {
	switch {
	case st.full || st.frozen[i] || offset <= st.offsets[i]:
		return // no room, or already in the answer or the cursor
	case offset != st.offsets[i]+1:
		// A gap in a live stream: never skip over it. The next poll reads
		// the channel's history from the last offset in the answer.
		st.frozen[i], st.gap = true, true
		return
	case len(st.msgs) >= st.maxMsgs || len(st.msgs) > 0 && st.bytes+len(push) > st.maxBytes:
		st.full = true
		return
	}
	st.msgs = append(st.msgs, push)
	st.bytes += len(push)
	st.offsets[i] = offset
}

// lost records that channel i cannot be recovered from the cursor: the
// answer moves it to pos and lists it as unrecovered.
func (st *state) lost(i int, pos broker.Position) {
	st.unrecovered[i] = true
	st.offsets[i], st.epochs[i] = pos.Offset, pos.Epoch
}

// done reports whether the answer should be sent without waiting for a
// publication.
func (st *state) done() bool { return len(st.msgs) > 0 || st.urgent() }

// urgent reports whether the answer should be sent without waiting at all,
// not even BatchDelay.
func (st *state) urgent() bool {
	return st.full || st.gap || slices.Contains(st.unrecovered, true)
}

// position is a channel's position in an answer.
type position struct {
	Channel string `json:"channel"`
	Offset  uint64 `json:"offset"`
	Epoch   string `json:"epoch"`
}

// encode returns the answer: {"messages":[pushes],"cursor":C,
// "channels":[{"channel","offset","epoch"}...][,"unrecovered":[channels]]}.
// The channels' positions are those the cursor holds, for clients that
// carry them to another transport (as "since").
func (st *state) encode() []byte {
	b := make([]byte, 0, st.bytes+len(st.msgs)+256)
	b = append(b, `{"messages":[`...)
	for i, m := range st.msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	b = append(b, `],"cursor":"`...)
	b = append(b, encodeCursor(st.channels, st.epochs, st.offsets)...)
	b = append(b, `","channels":[`...)
	for i, ch := range st.channels {
		if i > 0 {
			b = append(b, ',')
		}
		p, _ := json.Marshal(position{ch, st.offsets[i], st.epochs[i]})
		b = append(b, p...)
	}
	b = append(b, ']')
	var lost []string
	for i, u := range st.unrecovered {
		if u {
			lost = append(lost, st.channels[i])
		}
	}
	if lost != nil {
		list, _ := json.Marshal(lost) // valid channel names need no escaping
		b = append(b, `,"unrecovered":`...)
		b = append(b, list...)
	}
	return append(b, "}\n"...)
}
