package websocket

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/protocol/pb"
)

// dialProtocols opens a WebSocket offering the given subprotocols and
// returns the client and the subprotocol the server selected.
func (e *testEnv) dialProtocols(protocols ...string) (*client, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, hs, err := ws.Dialer{Protocols: protocols}.Dial(ctx, e.url())
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: e.t, nc: nc, r: nc}
	if br != nil {
		c.r = io.MultiReader(br, nc)
	}
	return c, hs.Protocol
}

// binClient is a client of the binary protocol; pending holds the pushes
// callBin read past while it waited for its reply.
type binClient struct {
	*client
	pending []pb.Reply
}

func (e *testEnv) dialBinary() *binClient {
	e.t.Helper()
	c, p := e.dialProtocols(pb.Subprotocol)
	if p != pb.Subprotocol {
		e.t.Fatalf("server selected %q", p)
	}
	return &binClient{client: c}
}

// sendCmd sends a command in a binary frame.
func (c *binClient) sendCmd(cmd protocol.Command) {
	c.t.Helper()
	c.write(masked(ws.NewBinaryFrame(pb.AppendCommand(nil, &cmd))))
}

// nextBinary returns the next binary message, decoded, and its frame's
// payload, failing on anything else.
func (c *binClient) nextBinary() (pb.Reply, []byte) {
	c.t.Helper()
	if len(c.pending) > 0 {
		r := c.pending[0]
		c.pending = c.pending[1:]
		return r, nil
	}
	for {
		f, err := c.frame()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpBinary:
			r, err := pb.DecodeReply(f.Payload)
			if err != nil {
				c.t.Fatalf("server sent %x: %v", f.Payload, err)
			}
			return r, f.Payload
		default:
			c.t.Fatalf("unexpected frame %v %q", f.Header.OpCode, f.Payload)
		}
	}
}

// callBin sends cmd with id and returns its reply.
func (c *binClient) callBin(id int64, cmd protocol.Command) pb.Reply {
	c.t.Helper()
	cmd.ID, cmd.HasID = id, true
	c.sendCmd(cmd)
	var skipped []pb.Reply
	for {
		r, _ := c.nextBinary()
		if r.HasID && r.ID == id {
			c.pending = append(skipped, c.pending...)
			return r
		}
		skipped = append(skipped, r)
	}
}

func TestSubprotocolNegotiation(t *testing.T) {
	e := startEnv(t, ReaderGoroutine, nil)
	tests := []struct {
		offer []string
		want  string
	}{
		{nil, ""},
		{[]string{pb.Subprotocol}, pb.Subprotocol},
		{[]string{SubprotocolJSON}, SubprotocolJSON},
		{[]string{"mqtt", pb.Subprotocol, SubprotocolJSON}, pb.Subprotocol},
		{[]string{SubprotocolJSON, pb.Subprotocol}, SubprotocolJSON},
		{[]string{"switchboard.v2.protobuf"}, ""},
	}
	for _, tc := range tests {
		c, got := e.dialProtocols(tc.offer...)
		if got != tc.want {
			t.Errorf("offer %v: selected %q, want %q", tc.offer, got, tc.want)
		}
		// Whatever was selected, a JSON ping works unless it is binary.
		if got != pb.Subprotocol {
			if m := c.call(1, `{"id":1,"command":"ping"}`); m["result"] == nil {
				t.Errorf("offer %v: ping got %v", tc.offer, m)
			}
		} else if r := (&binClient{client: c}).callBin(1, protocol.Command{Command: "ping"}); r.Error != nil {
			t.Errorf("offer %v: ping got %+v", tc.offer, r)
		}
	}
}

func TestBinaryProtocolPubSub(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnvHub(t, reader, func(c *hub.Config) { c.ClientPublish = true; c.HistorySize = 10 }, nil)
		bc := e.dialBinary()
		jc := e.dial()
		if r := bc.callBin(1, protocol.Command{Command: "subscribe", Channel: "feed"}); r.Error != nil || !bytes.Contains(r.Result, []byte(`"channel":"feed"`)) {
			t.Fatalf("subscribe: %+v", r)
		}
		jc.subscribe("feed")

		// Binary data from the binary client.
		raw := []byte{0, 1, 2, 0xfe, 0xff}
		r := bc.callBin(2, protocol.Command{Command: "publish", Channel: "feed", Data: protocol.BinaryData(raw)})
		if r.Error != nil || !bytes.Contains(r.Result, []byte(`"offset":1`)) {
			t.Fatalf("publish: %+v %s", r, r.Result)
		}
		p, _ := bc.nextBinary()
		if p.Publication == nil || !p.Publication.Binary || !bytes.Equal(p.Publication.Raw, raw) || p.Publication.Offset != 1 || p.Publication.Channel != "feed" {
			t.Fatalf("binary subscriber got %+v", p)
		}
		if m := jc.next(); m["offset"] != float64(1) || !jsonIs(m["data"], `{"$binary":"AAEC/v8="}`) {
			t.Fatalf("JSON subscriber got %v", m)
		}

		// JSON data from the JSON client, and the JSON form of binary.
		jc.call(3, `{"id":3,"command":"publish","channel":"feed","data":{"price":101.5,"sym":"ACME"}}`)
		p, _ = bc.nextBinary()
		if p.Publication == nil || p.Publication.Binary || string(p.Publication.Data) != `{"price":101.5,"sym":"ACME"}` {
			t.Fatalf("binary subscriber got %+v", p.Publication)
		}
		jc.call(4, `{"id":4,"command":"publish","channel":"feed","data":{"$binary":"3q2+7w=="}}`)
		p, _ = bc.nextBinary()
		if p.Publication == nil || !p.Publication.Binary || !bytes.Equal(p.Publication.Raw, []byte{0xde, 0xad, 0xbe, 0xef}) {
			t.Fatalf("binary subscriber got %+v", p.Publication)
		}

		// History and recovery carry binary data as bytes.
		h := bc.callBin(5, protocol.Command{Command: "history", Channel: "feed"})
		if h.Error != nil || len(h.Publications) != 3 || !h.Publications[0].Binary || !bytes.Equal(h.Publications[0].Raw, raw) || h.Publications[1].Binary {
			t.Fatalf("history: %+v", h)
		}
		var pos struct {
			Epoch string `json:"epoch"`
		}
		_ = json.Unmarshal(h.Result, &pos)
		rc := e.dialBinary()
		rec := rc.callBin(6, protocol.Command{Command: "subscribe", Channel: "feed", Since: &protocol.StreamPosition{Offset: 1, Epoch: pos.Epoch}})
		if rec.Error != nil || !bytes.Contains(rec.Result, []byte(`"recovered":true`)) || len(rec.Publications) != 2 || rec.Publications[1].Offset != 3 || !rec.Publications[1].Binary {
			t.Fatalf("recovery: %+v %s", rec, rec.Result)
		}

		// A ping without id gets a pong.
		bc.sendCmd(protocol.Command{Command: "ping"})
		if p, _ := bc.nextBinary(); !p.Pong {
			t.Fatalf("ping got %+v", p)
		}
	})
}

func jsonIs(v any, want string) bool {
	b, _ := json.Marshal(v)
	return string(b) == want
}

func TestBinaryProtocolErrors(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnvHub(t, reader, func(c *hub.Config) { c.ClientPublish = true }, nil)
		c := e.dialBinary()
		if r := c.callBin(1, protocol.Command{Command: "subscribe", Channel: "bad name"}); r.Error == nil || r.Error.Code != 422 {
			t.Fatalf("bad channel: %+v", r)
		}
		if r := c.callBin(2, protocol.Command{Command: "nope"}); r.Error == nil || r.Error.Code != 404 {
			t.Fatalf("unknown command: %+v", r)
		}
		// Malformed protobuf after a readable id: 400 with the id.
		c.write(masked(ws.NewBinaryFrame([]byte{0x08, 0x07, 0x12, 0x7f, 'x'})))
		if r, _ := c.nextBinary(); r.Error == nil || r.Error.Code != 400 || !r.HasID || r.ID != 7 {
			t.Fatalf("malformed: %+v", r)
		}
		// Garbage: 400 without id; the connection goes on.
		c.write(masked(ws.NewBinaryFrame([]byte{0xff, 0xff, 0xff})))
		if r, _ := c.nextBinary(); r.Error == nil || r.Error.Code != 400 || r.HasID {
			t.Fatalf("garbage: %+v", r)
		}
		if r := c.callBin(3, protocol.Command{Command: "ping"}); r.Error != nil {
			t.Fatalf("ping after errors: %+v", r)
		}
		// A text frame on a binary connection closes it with 1003.
		c.sendText(`{"command":"ping"}`)
		if code := c.expectClose(); code != 1003 {
			t.Fatalf("closed with %d, want 1003", code)
		}
	})
}

// TestBinaryEncodedOnce checks that a publication is encoded in the binary
// form once, whatever the number of binary subscribers, and that they all
// get the same bytes.
func TestBinaryEncodedOnce(t *testing.T) {
	e := startEnv(t, ReaderGoroutine, nil)
	var subs []*binClient
	for range 3 {
		c := e.dialBinary()
		if r := c.callBin(1, protocol.Command{Command: "subscribe", Channel: "news"}); r.Error != nil {
			t.Fatal(r.Error)
		}
		subs = append(subs, c)
	}
	if _, err := e.hub.Publish(t.Context(), "news", protocol.BinaryData([]byte("hi")), "test"); err != nil {
		t.Fatal(err)
	}
	var first []byte
	for _, c := range subs {
		r, payload := c.nextBinary()
		if r.Publication == nil || string(r.Publication.Raw) != "hi" {
			t.Fatalf("got %+v", r)
		}
		if first == nil {
			first = payload
		} else if !bytes.Equal(first, payload) {
			t.Fatalf("subscribers got %x and %x", first, payload)
		}
	}
	n := 0
	for i := range e.hd.pbc.shards {
		sh := &e.hd.pbc.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	if n != 1 {
		t.Fatalf("%d publications encoded, want 1", n)
	}
}

// TestBinaryWithCompression: the binary form is compressed like text, in
// binary frames with RSV1.
func TestBinaryWithCompression(t *testing.T) {
	e := startEnvHub(t, ReaderGoroutine, func(c *hub.Config) { c.ClientPublish = true }, withCompression)
	bc := &binClient{client: e.dialCompressedBinary()}
	if r := bc.callBin(1, protocol.Command{Command: "subscribe", Channel: "z"}); r.Error != nil {
		t.Fatal(r.Error)
	}
	data := bytes.Repeat([]byte("compressible "), 20)
	if _, err := e.hub.Publish(t.Context(), "z", protocol.BinaryData(data), "test"); err != nil {
		t.Fatal(err)
	}
	f, err := bc.frame()
	for err == nil && f.Header.OpCode != ws.OpBinary {
		f, err = bc.frame()
	}
	if err != nil || !f.Header.Rsv1() {
		t.Fatalf("frame %+v, %v: want a compressed binary frame", f.Header, err)
	}
	msg, err := inflate(f.Payload, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pb.DecodeReply(msg)
	if err != nil || r.Publication == nil || !bytes.Equal(r.Publication.Raw, data) {
		t.Fatalf("got %+v, %v", r, err)
	}
}
