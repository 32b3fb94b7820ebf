package websocket

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/fossil"
	"github.com/switchboardhq/switchboard/internal/hub"
)

// deltaFeed is a realistic feed update of about 1 KB: a few fields change
// from one publication to the next.
func deltaFeed(i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"symbol":"SWB","name":"Switchboard Holdings — 交易所","price":%d.%02d,"volume":%d,"updated_at":"2026-12-04T12:%02d:%02dZ","book":[`,
		100+i%10, i%100, 1000000+i*37, i/60%60, i%60)
	for l := range 12 {
		if l > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"level":%d,"bid":%d.25,"ask":%d.75,"size":%d}`, l, 99-l, 101+l, (l+1)*100)
	}
	b.WriteString(`],"status":"open"}`)
	return b.Bytes()
}

// deltaReader plays an SDK: it keeps the data of the last publication of
// a delta subscription and applies deltas to it.
type deltaReader struct {
	t    *testing.T
	c    *client
	prev []byte
}

// pub reads the next push, which must be a publication, and returns its
// offset, its full data and whether it came as a delta. compressed reports
// whether the frame was compressed.
func (r *deltaReader) pub() (offset uint64, data []byte, delta, compressed bool) {
	r.t.Helper()
	msg, _, z := r.c.readMessage()
	var m struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
		Offset  uint64          `json:"offset"`
		Delta   bool            `json:"delta"`
		Reset   json.RawMessage `json:"reset"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		r.t.Fatalf("push %q: %v", msg, err)
	}
	if m.Reset != nil {
		r.prev = nil
		return r.pub()
	}
	var s string
	if err := json.Unmarshal(m.Data, &s); err != nil {
		r.t.Fatalf("delta subscription got data that is not a string: %s", msg)
	}
	data = []byte(s)
	if m.Delta {
		if r.prev == nil {
			r.t.Fatalf("a delta with no previous publication: %s", msg)
		}
		var err error
		if data, err = fossil.Apply(r.prev, data); err != nil {
			r.t.Fatalf("delta of offset %d does not apply: %v", m.Offset, err)
		}
	}
	r.prev = data
	return m.Offset, data, m.Delta, z
}

// TestDeltaSubscription: over a real WebSocket, delta subscribers (one
// with permessage-deflate) get the first publication whole, then deltas
// that rebuild every publication exactly; a publication after a gap, one
// whose delta would not be smaller, and one after a reset come whole; a
// plain subscriber of the same channel is unaffected.
func TestDeltaSubscription(t *testing.T) {
	e := startEnvHub(t, ReaderGoroutine, func(c *hub.Config) { c.HistorySize = 100 }, withCompression)
	zc, _ := e.dialOffer("permessage-deflate")
	dc, _ := e.dialOffer("")
	plain, _ := e.dialOffer("")
	var epoch string
	for _, c := range []*client{zc, dc} {
		res := c.callInflating(1, `{"id":1,"command":"subscribe","channel":"feed","delta":"fossil"}`)
		r, _ := res["result"].(map[string]any)
		if r == nil || r["delta"] != true {
			t.Fatalf("delta subscribe answered %v", res)
		}
		epoch = r["epoch"].(string)
	}
	if res := plain.call(1, `{"id":1,"command":"subscribe","channel":"feed"}`); res["result"].(map[string]any)["delta"] != nil {
		t.Fatalf("plain subscribe answered %v", res)
	}
	if res := plain.call(2, `{"id":2,"command":"subscribe","channel":"other","delta":"xdelta"}`); errorOf(res) != 400 {
		t.Fatalf("unknown delta format answered %v", res)
	}

	type step struct {
		offset uint64
		data   []byte
		delta  bool // a delta is expected
		inject bool // delivered as a remote broker would, not published
		epoch  string
	}
	unrelated := bytes.Repeat([]byte(`"zz"`), 300)
	steps := []step{
		{offset: 1, data: deltaFeed(1)},
		{offset: 2, data: deltaFeed(2), delta: true},
		{offset: 3, data: deltaFeed(3), delta: true},
		{offset: 4, data: deltaFeed(4), delta: true},
		{offset: 7, data: deltaFeed(7), inject: true},                     // 5 and 6 never came: whole
		{offset: 8, data: deltaFeed(8), inject: true, delta: true},        // and deltas again
		{offset: 9, data: unrelated, inject: true},                        // no smaller delta: whole
		{offset: 1, data: deltaFeed(20), inject: true, epoch: "NEWEPOCH"}, // history lost: reset, whole
		{offset: 2, data: deltaFeed(21), inject: true, epoch: "NEWEPOCH", delta: true},
	}
	readers := []*deltaReader{{t: t, c: zc}, {t: t, c: dc}}
	for _, s := range steps {
		if s.inject {
			ep := epoch
			if s.epoch != "" {
				ep = s.epoch
			}
			e.hub.HandlePublication("feed", broker.Publication{Offset: s.offset, Data: s.data}, ep)
		} else if pos, err := e.hub.Publish(t.Context(), "feed", s.data, "test"); err != nil || pos.Offset != s.offset {
			t.Fatalf("publish: %v at %d, want %d", err, pos.Offset, s.offset)
		}
		for i, r := range readers {
			off, data, delta, z := r.pub()
			if off != s.offset || !bytes.Equal(data, s.data) || delta != s.delta {
				t.Fatalf("reader %d: offset %d delta %v data %s; want offset %d delta %v data %s", i, off, delta, data, s.offset, s.delta, s.data)
			}
			if i == 0 && !delta && !z {
				t.Fatalf("a whole publication of %d bytes was not compressed", len(data))
			}
		}
		msg, _, _ := plain.readMessage()
		if s.epoch != "" && s.offset == 1 {
			msg, _, _ = plain.readMessage() // the reset push
		}
		if !bytes.Contains(msg, append([]byte(`"data":`), s.data...)) {
			t.Fatalf("plain subscriber got %s", msg)
		}
	}
}

// callInflating is call for a client that may get compressed replies.
func (c *client) callInflating(id int, cmd string) map[string]any {
	c.t.Helper()
	c.sendText(cmd)
	for {
		msg, _, _ := c.readMessage()
		var m map[string]any
		if err := json.Unmarshal(msg, &m); err != nil {
			c.t.Fatalf("server sent %q: %v", msg, err)
		}
		if m["id"] == float64(id) {
			return m
		}
	}
}

func errorOf(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(float64)
	return int(c)
}

// TestDeltaSmallerOnTheWire: a feed update travels as a delta a fraction
// of the whole publication's size.
func TestDeltaSmallerOnTheWire(t *testing.T) {
	e := startEnvHub(t, ReaderGoroutine, nil, withCompression)
	c, _ := e.dialOffer("")
	c.call(1, `{"id":1,"command":"subscribe","channel":"feed","delta":"fossil"}`)
	for i := 1; i <= 2; i++ {
		if _, err := e.hub.Publish(t.Context(), "feed", deltaFeed(i), "test"); err != nil {
			t.Fatal(err)
		}
	}
	whole, _, _ := c.readMessage()
	delta, _, _ := c.readMessage()
	if len(delta)*5 > len(whole) {
		t.Fatalf("delta push of %d bytes for a whole push of %d: %s", len(delta), len(whole), delta)
	}
}

// TestDeltaAfterRecovery: a delta subscribe with since gets the missed
// publications whole in its reply, and the next live one as a delta from
// the last of them; without an id (no reply, so nothing recovered is
// sent) the next live one comes whole.
func TestDeltaAfterRecovery(t *testing.T) {
	e := startEnvHub(t, ReaderGoroutine, func(c *hub.Config) { c.HistorySize = 100 }, nil)
	var epoch string
	for i := 1; i <= 3; i++ {
		pos, err := e.hub.Publish(t.Context(), "feed", deltaFeed(i), "test")
		if err != nil {
			t.Fatal(err)
		}
		epoch = pos.Epoch
	}
	withID, _ := e.dialOffer("")
	res := withID.call(1, fmt.Sprintf(`{"id":1,"command":"subscribe","channel":"feed","delta":"fossil","since":{"offset":1,"epoch":%q}}`, epoch))
	r := res["result"].(map[string]any)
	pubs, _ := r["publications"].([]any)
	if r["recovered"] != true || r["delta"] != true || len(pubs) != 2 {
		t.Fatalf("recovering subscribe answered %v", res)
	}
	dr := &deltaReader{t: t, c: withID}
	for i, p := range pubs {
		s, ok := p.(map[string]any)["data"].(string)
		if !ok || p.(map[string]any)["delta"] != nil || s != string(deltaFeed(i+2)) {
			t.Fatalf("recovered publication %d: %v", i, p)
		}
		dr.prev = []byte(s)
	}
	noID, _ := e.dialOffer("")
	noID.sendText(fmt.Sprintf(`{"command":"subscribe","channel":"feed","delta":"fossil","since":{"offset":1,"epoch":%q}}`, epoch))
	// The subscribe without an id is done once a command after it is answered.
	noID.call(2, `{"id":2,"command":"ping"}`)
	if _, err := e.hub.Publish(t.Context(), "feed", deltaFeed(4), "test"); err != nil {
		t.Fatal(err)
	}
	if off, data, delta, _ := dr.pub(); off != 4 || !delta || !bytes.Equal(data, deltaFeed(4)) {
		t.Fatalf("after recovery: offset %d delta %v data %s", off, delta, data)
	}
	nr := &deltaReader{t: t, c: noID}
	if off, data, delta, _ := nr.pub(); off != 4 || delta || !bytes.Equal(data, deltaFeed(4)) {
		t.Fatalf("after a subscribe without reply: offset %d delta %v data %s", off, delta, data)
	}
}
