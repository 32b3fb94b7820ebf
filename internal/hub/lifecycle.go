package hub

import (
	"context"
	"time"
)

// Lifecycle receives the engine's reports of connections and
// subscriptions starting and ending; the webhook dispatcher implements it.
// Its methods may wait on the broker and are called with a context that
// bounds them. For one subscription, Left always comes after Joined; for
// one connection, ClientDisconnected after ClientConnected, and only for
// connections ClientConnected was reported for. Short-lived long-poll
// sessions are not reported.
//
// A start can be refused, an end cannot. When Joined or ClientConnected
// returns an error the report may not be recorded: the subscribe or
// connect fails with a retryable error, and the caller reports the end
// (Left, ClientDisconnected) at once, which undoes the start if it was
// recorded after all and changes nothing otherwise. Left and
// ClientDisconnected must get their report through eventually (the
// webhook dispatcher holds and retries it).
type Lifecycle interface {
	// ClientConnected reports a connection, before its connect is
	// answered; an error refuses it.
	ClientConnected(ctx context.Context, client, user, transport string) error
	// ClientDisconnected reports the end of a connection; it cannot be
	// refused. For a connection not recorded it changes nothing.
	ClientDisconnected(ctx context.Context, client, user, transport string)
	// Joined reports a subscription, before its subscribe is answered; an
	// error refuses it.
	Joined(ctx context.Context, channel, client, user string) error
	// Left reports the end of a subscription; it cannot be refused. For a
	// subscription not recorded it changes nothing.
	Left(ctx context.Context, channel, client, user string)
}

// A session's connection report moves through these states (in
// Session.reported): from lcNone to lcBusy while ClientConnected runs, to
// lcConnected when it succeeded (or back to lcNone when it failed), and to
// lcGone when the session ends. An end during lcBusy sets lcGoneWanted,
// and the reporter reports the disconnection once its call returns, so
// that a disconnection never comes before its connection.
const (
	lcNone uint32 = iota
	lcBusy
	lcConnected
	lcGoneWanted
	lcGone
)

// ReportSubscriptions reports every connection and live subscription of
// this node to the Lifecycle again (ClientConnected, Joined). The webhook
// dispatcher calls it when other nodes may have taken this node for dead
// and removed its clients. Each report takes the connection's or the
// subscription's report state like a first report, so that an end
// meanwhile is reported after it, never before.
func (h *Hub) ReportSubscriptions(ctx context.Context) {
	lc := h.cfg.Lifecycle
	if lc == nil {
		return
	}
	var subs []*subscription
	for _, s := range h.appendSessions(nil) {
		if s.ephemeral {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if s.reported.CompareAndSwap(lcConnected, lcBusy) {
			// A failure here refuses nothing: the session stays
			// connected, and its disconnection is reported in any case.
			_ = lc.ClientConnected(ctx, s.id, s.User(), s.transport.Name())
			s.connReported()
		}
		subs = s.appendSubs(subs[:0])
		for _, sub := range subs {
			if ctx.Err() != nil {
				return
			}
			if !sub.hold() {
				continue
			}
			info := sub.clientInfo()
			_ = lc.Joined(ctx, sub.channel, info.Client, info.User)
			sub.release(info)
		}
	}
}

// reportConnected reports the session as connected to the Lifecycle, once:
// at its connect command, or at its first subscription on a transport
// without commands. An error means the report was not recorded: the
// connect or subscribe must fail, and a later one reports again.
func (s *Session) reportConnected(ctx context.Context) error {
	lc := s.hub.cfg.Lifecycle
	if lc == nil || s.ephemeral || !s.reported.CompareAndSwap(lcNone, lcBusy) {
		return nil
	}
	if err := lc.ClientConnected(ctx, s.id, s.User(), s.transport.Name()); err != nil {
		lc.ClientDisconnected(ctx, s.id, s.User(), s.transport.Name()) // the undo
		if !s.reported.CompareAndSwap(lcBusy, lcNone) {
			s.reported.Store(lcGone) // the session ended meanwhile, and its end is reported
		}
		return err
	}
	s.connReported()
	return nil
}

// connReported ends a successful ClientConnected call: the session is
// connected, or, when it ended meanwhile, its disconnection is reported
// now.
func (s *Session) connReported() {
	if s.reported.CompareAndSwap(lcBusy, lcConnected) {
		return
	}
	s.reported.Store(lcGone) // lcGoneWanted
	s.writeDisconnected()
}

// reportDisconnected reports the end of a session reportConnected
// reported; it runs after the session left its channels. A session that
// was never reported connected will not be any more.
func (s *Session) reportDisconnected() {
	for {
		switch st := s.reported.Load(); st {
		case lcNone:
			if s.reported.CompareAndSwap(lcNone, lcGone) {
				return
			}
		case lcBusy:
			if s.reported.CompareAndSwap(lcBusy, lcGoneWanted) {
				return // the reporter reports it
			}
		case lcConnected:
			if s.reported.CompareAndSwap(lcConnected, lcGone) {
				s.writeDisconnected()
				return
			}
		default:
			return
		}
	}
}

func (s *Session) writeDisconnected() {
	lc := s.hub.cfg.Lifecycle
	if lc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lc.ClientDisconnected(ctx, s.id, s.User(), s.transport.Name())
}
