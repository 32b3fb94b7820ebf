package websocket

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/hub"
)

// dialOffer opens a WebSocket to e with offer as its
// Sec-WebSocket-Extensions header (none when empty), by hand, so that the
// test sees exactly what the server answers. It returns the client and the
// server's Sec-WebSocket-Extensions.
func (e *testEnv) dialOffer(offer string) (*client, string) {
	e.t.Helper()
	return e.dialOfferProtocol(offer, "")
}

// dialCompressedBinary opens a WebSocket that negotiates both
// permessage-deflate and the binary protocol.
func (e *testEnv) dialCompressedBinary() *client {
	e.t.Helper()
	c, ext := e.dialOfferProtocol("permessage-deflate", "switchboard.v1.protobuf")
	if ext == "" {
		e.t.Fatal("compression not negotiated")
	}
	return c
}

// dialOfferProtocol is dialOffer that also offers a subprotocol.
func (e *testEnv) dialOfferProtocol(offer, protocol string) (*client, string) {
	e.t.Helper()
	nc, err := net.DialTimeout("tcp", e.addr, 10*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = nc.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: " + e.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if offer != "" {
		req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	if protocol != "" {
		req += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		e.t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		e.t.Fatalf("upgrade answered %s", res.Status)
	}
	return &client{t: e.t, nc: nc, r: io.MultiReader(br, nc)}, res.Header.Get("Sec-WebSocket-Extensions")
}

func withCompression(o *Options) {
	o.Compression = true
	o.CompressionMinSize = 64
	o.MaxMessageSize = 4096
}

func TestCompressionNegotiation(t *testing.T) {
	const accepted = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"
	tests := []struct {
		name  string
		on    bool
		offer string
		want  string
	}{
		{"plain offer", true, "permessage-deflate", accepted},
		{"as Chromium offers it", true, "permessage-deflate; client_max_window_bits", accepted},
		{"both no-context-takeover asked", true, "permessage-deflate; server_no_context_takeover; client_no_context_takeover", accepted},
		{"a smaller server window is declined", true, "permessage-deflate; server_max_window_bits=10", ""},
		{"the next offer is taken", true, "permessage-deflate; server_max_window_bits=10, permessage-deflate", accepted},
		{"a malformed offer is declined", true, "permessage-deflate; client_max_window_bits=99", ""},
		{"an unknown parameter is declined", true, "permessage-deflate; bogus=1", ""},
		{"another extension is ignored", true, "x-webkit-deflate-frame", ""},
		{"no offer", true, "", ""},
		{"compression off", false, "permessage-deflate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, DefaultReader, func(o *Options) {
				if tt.on {
					withCompression(o)
				}
			})
			c, got := e.dialOffer(tt.offer)
			if got != tt.want {
				t.Fatalf("Sec-WebSocket-Extensions: %q, want %q", got, tt.want)
			}
			// Whatever was negotiated, the connection works.
			if m := c.call(7, `{"id":7,"command":"ping"}`); m["error"] != nil {
				t.Fatalf("ping: %v", m)
			}
		})
	}
}

// readMessage reads the next text message, inflating it when its frame has
// RSV1; it reports whether it did.
func (c *client) readMessage() ([]byte, []byte, bool) {
	c.t.Helper()
	for {
		f, err := c.frame()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f.Header.OpCode != ws.OpText {
			continue
		}
		if !f.Header.Rsv1() {
			return f.Payload, f.Payload, false
		}
		fr := flate.NewReader(io.MultiReader(bytes.NewReader(f.Payload), bytes.NewReader(deflateTail)))
		msg, err := io.ReadAll(fr)
		if err != io.ErrUnexpectedEOF && err != nil {
			c.t.Fatalf("inflate: %v", err)
		}
		return msg, f.Payload, true
	}
}

// compressedFrame is a masked, final text frame with RSV1 and payload
// compressed as permessage-deflate sends it.
func compressedFrame(msg []byte) []byte {
	f := ws.NewTextFrame(deflate(nil, msg, flate.BestSpeed))
	f.Header.Rsv = ws.Rsv(true, false, false)
	return masked(f)
}

func TestCompressionDeliversAndCompressesOnce(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnvHub(t, reader, func(c *hub.Config) { c.ClientPublish = true }, withCompression)
		a, _ := e.dialOffer("permessage-deflate; client_max_window_bits")
		b, _ := e.dialOffer("permessage-deflate")
		plain, _ := e.dialOffer("")
		for _, c := range []*client{a, b, plain} {
			c.subscribe("feed")
		}
		big := []byte(`{"prices":[` + strings.Repeat(`"1234.5",`, 100) + `"end"]}`)
		small := []byte(`{"n":1}`)
		for _, data := range [][]byte{big, small} {
			if _, err := e.hub.Publish(t.Context(), "feed", data, "test"); err != nil {
				t.Fatal(err)
			}
		}
		msgA, zA, okA := a.readMessage()
		msgB, zB, okB := b.readMessage()
		msgP, _, okP := plain.readMessage()
		if !okA || !okB || okP {
			t.Fatalf("compressed: %v, %v, plain client %v", okA, okB, okP)
		}
		if !bytes.Equal(msgA, msgP) || !bytes.Equal(msgB, msgP) || !bytes.Contains(msgP, big) {
			t.Fatalf("inflated messages differ:\n%s\n%s\n%s", msgA, msgB, msgP)
		}
		if !bytes.Equal(zA, zB) || len(zA) >= len(msgP)/4 {
			t.Fatalf("compressed forms: %d and %d bytes for %d", len(zA), len(zB), len(msgP))
		}
		// Below CompressionMinSize: sent as it is.
		for _, c := range []*client{a, b, plain} {
			msg, _, z := c.readMessage()
			if z || !bytes.Contains(msg, small) {
				t.Fatalf("small message compressed %v: %s", z, msg)
			}
		}
		// A compressed command is inflated, and a long reply compressed.
		cmd := fmt.Sprintf(`{"id":9,"command":"publish","channel":"feed","data":%s}`, big)
		a.write(compressedFrame([]byte(cmd)))
		for {
			msg, _, z := a.readMessage()
			var m map[string]any
			if err := json.Unmarshal(msg, &m); err != nil {
				t.Fatalf("%q: %v", msg, err)
			}
			if m["id"] == float64(9) {
				if m["error"] != nil {
					t.Fatalf("compressed publish: %v", m)
				}
				break
			}
			if !z {
				t.Fatalf("a long publication arrived uncompressed: %s", msg)
			}
		}
	})
}

func TestCompressionBadInput(t *testing.T) {
	bomb := compressedFrame(bytes.Repeat([]byte("a"), 1<<20))
	fragmented := func(second byte) []byte {
		z := deflate(nil, []byte(`{"id":1,"command":"ping"}`), flate.BestSpeed)
		f1 := ws.NewFrame(ws.OpText, false, z[:3])
		f1.Header.Rsv = ws.Rsv(true, false, false)
		f2 := ws.NewFrame(ws.OpContinuation, true, z[3:])
		f2.Header.Rsv = second
		return append(masked(f1), masked(f2)...)
	}
	rsvPing := ws.NewPingFrame(nil)
	rsvPing.Header.Rsv = ws.Rsv(true, false, false)
	tests := []struct {
		name   string
		offer  string
		frames []byte
		code   int
	}{
		{"a bomb inflating past max_message_size", "permessage-deflate", bomb, 1009},
		{"not deflate data", "permessage-deflate", func() []byte {
			f := ws.NewTextFrame([]byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x12})
			f.Header.Rsv = ws.Rsv(true, false, false)
			return masked(f)
		}(), 1007},
		{"invalid UTF-8 once inflated", "permessage-deflate", compressedFrame([]byte{'"', 0xff, 0xfe, '"'}), 1007},
		{"RSV1 on a continuation frame", "permessage-deflate", fragmented(ws.Rsv(true, false, false)), 1002},
		{"RSV1 on a control frame", "permessage-deflate", masked(rsvPing), 1002},
		{"RSV1 without negotiation", "", compressedFrame([]byte(`{"id":1,"command":"ping"}`)), 1002},
		{"RSV2 with negotiation", "permessage-deflate", func() []byte {
			f := ws.NewTextFrame([]byte(`{}`))
			f.Header.Rsv = ws.Rsv(false, true, false)
			return masked(f)
		}(), 1002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, DefaultReader, withCompression)
			other, _ := e.dialOffer("permessage-deflate")
			other.subscribe("room")
			c, _ := e.dialOffer(tt.offer)
			c.write(tt.frames)
			if got := c.expectClose(); got != tt.code {
				t.Fatalf("closed with %d, want %d", got, tt.code)
			}
			// Nobody else is affected.
			if _, err := e.hub.Publish(t.Context(), "room", []byte(`"still here"`), "test"); err != nil {
				t.Fatal(err)
			}
			if msg, _, _ := other.readMessage(); !bytes.Contains(msg, []byte("still here")) {
				t.Fatalf("the other client got %s", msg)
			}
		})
	}
	t.Run("a fragmented compressed message", func(t *testing.T) {
		e := startEnv(t, DefaultReader, withCompression)
		c, _ := e.dialOffer("permessage-deflate")
		c.write(fragmented(0))
		if m := c.next(); m["id"] != float64(1) || m["error"] != nil {
			t.Fatalf("reply %v", m)
		}
	})
}

func TestInflateLimit(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789"), 1000)
	z := deflate(nil, msg, flate.BestCompression)
	for _, limit := range []int{len(msg), len(msg) + 1, 1 << 20} {
		got, err := inflate(z, limit)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("limit %d: %d bytes, %v", limit, len(got), err)
		}
	}
	for _, limit := range []int{0, 1, 511, 512, len(msg) - 1} {
		if _, err := inflate(z, limit); err != errInflatedTooBig {
			t.Fatalf("limit %d: %v, want errInflatedTooBig", limit, err)
		}
	}
}

func TestDeflateCache(t *testing.T) {
	c := newDeflateCache(flate.BestSpeed)
	data := []byte(strings.Repeat("abcdef", 100))
	z1 := c.get(data)
	z2 := c.get(data)
	if len(z1) == 0 || &z1[0] != &z2[0] {
		t.Fatal("the same publication was compressed twice")
	}
	if got, _ := inflate(z1, 1<<20); !bytes.Equal(got, data) {
		t.Fatal("cached form does not inflate to the data")
	}
	// Same address, shorter slice: a different message.
	if z3 := c.get(data[:60]); len(z3) != 0 && &z3[0] == &z1[0] {
		t.Fatal("a prefix got the whole message's compressed form")
	}
	// Incompressible data is sent as it is.
	if z := c.get([]byte("xy")); z != nil {
		t.Fatalf("2 bytes compressed to %d", len(z))
	}
	// Eviction keeps the cache bounded.
	for i := range cacheShards * cacheShardSize * 2 {
		c.get([]byte(fmt.Sprintf("message %d %s", i, strings.Repeat("x", 50))))
	}
	n := 0
	for i := range c.cache.shards {
		n += len(c.cache.shards[i].m)
	}
	if n > cacheShards*cacheShardSize {
		t.Fatalf("%d entries in the cache", n)
	}
}

// FuzzInflate: arbitrary input never panics and never yields more than
// the limit.
func FuzzInflate(f *testing.F) {
	f.Add(deflate(nil, []byte(`{"id":1,"command":"ping"}`), flate.BestSpeed), 100)
	f.Add([]byte{0xff, 0x00}, 10)
	f.Add(deflate(nil, bytes.Repeat([]byte{0}, 5000), flate.BestCompression), 1000)
	f.Fuzz(func(t *testing.T, payload []byte, limit int) {
		limit = min(max(limit, 0), 1<<16)
		out, err := inflate(payload, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("%d bytes out with limit %d", len(out), limit)
		}
	})
}

// feedMessage is a realistic feed update: a JSON object of a few dozen
// fields of which a few change from one publication to the next.
func feedMessage(i int) []byte {
	return []byte(fmt.Sprintf(`{"channel":"markets","data":{"symbol":"SWB","name":"Switchboard Holdings","exchange":"XNAS",`+
		`"currency":"USD","price":%d.%02d,"change":%d.%02d,"volume":%d,"bid":%d.%02d,"ask":%d.%02d,"open":101.25,`+
		`"high":109.50,"low":99.75,"previous_close":100.00,"market_cap":123456789000,"pe_ratio":21.4,`+
		`"dividend_yield":0.012,"sector":"Technology","industry":"Software","updated_at":"2026-12-04T12:%02d:%02dZ",`+
		`"status":"open","halted":false,"tags":["realtime","nasdaq","large-cap"]},"offset":%d}`,
		100+i%10, i%100, i%5, i%100, 1000000+i*37, 100+i%10, i%100, 100+i%10, (i+1)%100, i/60%60, i%60, i+1))
}

// BenchmarkFeedDelivery compares plain and compressed delivery of a feed
// to many subscribers: each publication is compressed once (the cache) and
// framed for every subscriber. It reports wire bytes per delivery.
func BenchmarkFeedDelivery(b *testing.B) {
	const subscribers = 1000
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compressed=%v", compress), func(b *testing.B) {
			c := newDeflateCache(flate.BestSpeed)
			buf := make([]byte, 0, 4096)
			var wire int
			for i := 0; b.Loop(); i++ {
				msg := feedMessage(i)
				for range subscribers {
					buf = buf[:0]
					var z []byte
					if compress {
						z = c.get(msg)
					}
					if z != nil {
						buf = appendHeader(buf, ws.OpText, true, len(z))
						buf = append(buf, z...)
					} else {
						buf = appendHeader(buf, ws.OpText, false, len(msg))
						buf = append(buf, msg...)
					}
					wire += len(buf)
				}
			}
			b.ReportMetric(float64(wire)/float64(b.N*subscribers), "wire-B/delivery")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers), "ns/delivery")
		})
	}
}
