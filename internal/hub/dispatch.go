package hub

import (
	"context"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// command is how the hub runs one client command. Adding a command is
// adding an entry to commands.
type command struct {
	// run carries out the command and returns its JSON result (nil for
	// none), or the error the client gets. It returns errReplied when it
	// queued its own reply.
	run func(s *Session, ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error)
	// beforeAuth: the command is allowed before the client authenticated
	// when authentication is required (connect, refresh, ping).
	beforeAuth bool
	// local: the command does no I/O, so it runs without a timeout.
	local bool
}

// commands maps each command name of the protocol to its handler.
var commands = map[string]command{
	protocol.CmdConnect:       {run: (*Session).connect, beforeAuth: true},
	protocol.CmdRefresh:       {run: (*Session).refresh, beforeAuth: true}, // the refresh hook waits on the backend
	protocol.CmdPing:          {run: (*Session).ping, beforeAuth: true, local: true},
	protocol.CmdSubscribe:     {run: (*Session).subscribe},
	protocol.CmdUnsubscribe:   {run: (*Session).unsubscribe},
	protocol.CmdPublish:       {run: (*Session).publish},
	protocol.CmdHistory:       {run: (*Session).history},
	protocol.CmdPresence:      {run: (*Session).presence},
	protocol.CmdPresenceStats: {run: (*Session).presenceStats},
	CmdRoomJoin:               {run: (*Session).roomJoin},
	CmdRoomLeave:              {run: (*Session).roomLeave, local: true},
	CmdRoomOffer:              {run: (*Session).roomSignal},
	CmdRoomAnswer:             {run: (*Session).roomSignal},
	CmdRoomCandidate:          {run: (*Session).roomSignal},
	CmdRoomSubscribe:          {run: (*Session).roomSignal},
	CmdRoomPublish:            {run: (*Session).roomSignal},
	CmdRoomUnpublish:          {run: (*Session).roomSignal},
	CmdRoomMute:               {run: (*Session).roomSignal},
	CmdRoomICE:                {run: (*Session).roomSignal},
	protocol.CmdRPC:           {run: (*Session).rpc},
}

// dispatch runs a decoded command under the session's lifetime context,
// with the hub's CommandTimeout unless the command is local.
func (s *Session) dispatch(cmd *protocol.Command) ([]byte, *protocol.Error) {
	c, ok := commands[cmd.Command]
	if !ok {
		return nil, protocol.ErrUnknownCommand.WithMessage("unknown command %q", cmd.Command)
	}
	if !c.beforeAuth && s.hub.cfg.RequireAuth && !s.authed.Load() {
		return nil, protocol.ErrUnauthorized.WithMessage(`send {"command":"connect","token":...} first`)
	}
	if c.local {
		return c.run(s, context.Background(), cmd)
	}
	// The timeout is in real time, not the hub's clock: a fake clock's
	// context in clockwork costs a goroutine and its Err blocks until done.
	ctx, end := s.begin(context.Background())
	defer end()
	return c.run(s, ctx, cmd)
}

func (s *Session) ping(context.Context, *protocol.Command) ([]byte, *protocol.Error) {
	return nil, nil
}
