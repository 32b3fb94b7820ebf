package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/selftest"
)

// selfTest runs the calls' self-test in process: its peers sign in
// through the call service as the hub would, and reach the SFU and TURN
// over the network like any client on this host.
func (s *Server) selfTest(ctx context.Context) any {
	return selftest.Run(ctx, selftest.Config{
		Dial: func(context.Context) (selftest.Conn, error) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			return &localConn{rooms: s.calls.signal, id: "selftest-" + hex.EncodeToString(b[:])}, nil
		},
		Loopback:  true,
		PublicIPs: s.cfg.WebRTCPublicIP,
	})
}

// localConn is a self-test participant signed in through hub.Rooms
// directly, without a WebSocket.
type localConn struct {
	rooms hub.Rooms
	id    string

	mu     sync.Mutex
	joined []string
}

func (c *localConn) Join(ctx context.Context, room string, push func(string, json.RawMessage)) (selftest.JoinReply, error) {
	res, err := c.rooms.Join(ctx, hub.RoomJoin{
		Room: room, Participant: c.id, User: "selftest", Mode: "sfu", CanPublish: true,
		Push: func(event string, data []byte) { push(event, json.RawMessage(data)) },
	})
	if err != nil {
		return selftest.JoinReply{}, err
	}
	c.mu.Lock()
	c.joined = append(c.joined, room)
	c.mu.Unlock()
	var r selftest.JoinReply
	if err := json.Unmarshal(res, &r); err != nil {
		return r, fmt.Errorf("server: join reply: %w", err)
	}
	return r, nil
}

func (c *localConn) Command(ctx context.Context, command string, data map[string]any) (json.RawMessage, error) {
	room, _ := data["room"].(string)
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return c.rooms.Signal(ctx, room, c.id, strings.TrimPrefix(command, "room_"), raw)
}

func (c *localConn) Close() {
	c.mu.Lock()
	rooms := c.joined
	c.joined = nil
	c.mu.Unlock()
	for _, r := range rooms {
		c.rooms.Leave(r, c.id)
	}
}
