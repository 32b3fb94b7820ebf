package webhook

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecodeFact feeds queue entries to the fact parser and the state: a
// bad entry is an error, never a panic, and a good one keeps the state's
// counts consistent whatever order facts come in.
func FuzzDecodeFact(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","k":"join","t":1,"ch":"room","c":"n1-1","u":"alice","n":"n1"}`,
		`{"id":"b","k":"leave","t":2,"ch":"room","c":"n1-1","u":"alice","n":"n1"}`,
		`{"id":"c","k":"conn","t":3,"c":"n1-2","n":"n1","tr":"sse"}`,
		`{"id":"d","k":"disc","t":4,"c":"n1-2","n":"n1"}`,
		`{"id":"e","k":"join","ch":"","c":"x","n":"y"}`,
		`{"id":"f","k":"nope","c":"x","n":"y"}`,
		`[]`, `null`, `{"id":1}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := newPartState()
		var out []Event
		// The entry twice, as after a sender's crash, then a leave of its
		// client: whatever it was, the state ends consistent.
		for range 2 {
			fa, err := decodeFact(data)
			if err != nil {
				return
			}
			out = st.apply(fa, out)
		}
		fa, _ := decodeFact(data)
		fa.Kind, fa.ID = factLeave, fa.ID+"x"
		out = st.apply(fa, out)
		out = st.dropNode(fa.Node, time.Unix(0, 0), out)
		if len(st.channels) != 0 || len(st.conns) != 0 || len(st.nodes) != 0 {
			t.Fatalf("state not empty after every client left: %+v", st)
		}
		// An id made twice (a fact applied again) names the same event.
		ids := map[string]Event{}
		for _, e := range out {
			if prev, ok := ids[e.ID]; ok && prev != e {
				t.Fatalf("id %s for two events in %+v", e.ID, out)
			}
			ids[e.ID] = e
		}
		set, _ := st.changes()
		if len(set) != 0 {
			t.Fatalf("empty channels saved: %v", set)
		}
	})
}

// FuzzDecodeChannel feeds stored channel states to the parser: a bad one
// is an error, a good one encodes back to what parses the same.
func FuzzDecodeChannel(f *testing.F) {
	for _, s := range []string{
		`{"n1-1":{"u":"alice","n":"n1","j":"a"},"n1-2":{"n":"n1","j":"b"}}`,
		`{}`, `null`, `{"":{"n":"x"}}`, `{"c":{"n":""}}`, `[1]`, `{"c":{"u":5}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := decodeChannel(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(cs.clients)
		if err != nil {
			t.Fatal(err)
		}
		cs2, err := decodeChannel(again)
		if err != nil || len(cs2.clients) != len(cs.clients) || len(cs2.users) != len(cs.users) {
			t.Fatalf("round trip of %q: %v", data, err)
		}
		st, bad := loadPartState(map[string][]byte{"ch": data})
		if len(bad) != 0 || (len(cs.clients) > 0) != (st.channels["ch"] != nil) {
			t.Fatalf("load of %q: bad %v", data, bad)
		}
	})
}

// FuzzDecodeConn feeds stored client records to the state loader: a bad
// one is reported and left out, a good one is a connected client that
// encodes back to what parses the same.
func FuzzDecodeConn(f *testing.F) {
	for _, s := range []string{
		`{"u":"alice","n":"n1","t":"websocket","j":"a"}`, `{"n":"n1","j":"b"}`,
		`{}`, `null`, `{"n":"","j":"x"}`, `{"n":"x"}`, `[1]`, `{"u":5,"n":"x","j":"y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, bad := loadPartState(map[string][]byte{connKeyPrefix + "c1": data})
		c, err := decodeConn(data)
		if (err != nil) != (len(bad) == 1) {
			t.Fatalf("load of %q: bad %v, decode %v", data, bad, err)
		}
		if err != nil {
			if len(st.conns) != 0 || len(st.nodes) != 0 {
				t.Fatalf("bad record %q loaded: %+v", data, st)
			}
			return
		}
		if again, err := decodeConn(c.encode()); err != nil || again != c {
			t.Fatalf("round trip of %q: %+v, %v", data, again, err)
		}
		out := st.dropNode(c.Node, time.Unix(0, 0), nil)
		if len(out) != 1 || out[0].Type != ClientDisconnected || out[0].Reason != ReasonNodeGone || len(st.conns) != 0 || len(st.nodes) != 0 {
			t.Fatalf("dropping the node of %q: %+v, state %+v", data, out, st)
		}
	})
}

// FuzzVerify: the signature check never panics and accepts only the
// signature of the body.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"events":[]}`), "sha256=00")
	f.Add([]byte(``), "")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		key := []byte("k")
		if Verify(key, body, header) == nil && header != Sign(key, body) {
			t.Fatalf("accepted %q for %q", header, body)
		}
		if err := Verify(key, body, Sign(key, body)); err != nil {
			t.Fatal(err)
		}
	})
}
