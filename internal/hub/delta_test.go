package hub_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// rawTransport keeps the messages it is given as they are.
type rawTransport struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (t *rawTransport) Name() string { return "raw" }
func (t *rawTransport) WriteMessages(msgs []hub.Message) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		t.msgs = append(t.msgs, m.Data)
	}
	return nil
}
func (t *rawTransport) Close(protocol.Disconnect) error { return nil }

func (t *rawTransport) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.msgs)
}

// TestDeltaEncodedOnce: the whole and delta forms of a publication are
// made once and the same bytes go to every delta subscriber.
func TestDeltaEncodedOnce(t *testing.T) {
	h := newHub(t, hub.Config{})
	ts := []*rawTransport{{}, {}, {}}
	for i, tr := range ts {
		s := h.NewSession(tr, hub.SessionInfo{})
		cmd := `{"id":1,"command":"subscribe","channel":"c","delta":"fossil"}`
		if i == 2 {
			cmd = `{"id":1,"command":"subscribe","channel":"c"}`
		}
		send(s, cmd)
	}
	base := `{"text":"` + strings.Repeat("0123456789", 20) + `","n":`
	for _, d := range []string{base + `1}`, base + `2}`} {
		if _, err := h.Publish(context.Background(), "c", []byte(d), "test"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, tr := range ts {
		for tr.count() < 3 { // the reply and two publications
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %d messages", tr.count())
			}
			time.Sleep(time.Millisecond) // polling the writers
		}
	}
	a, b, plain := ts[0].msgs, ts[1].msgs, ts[2].msgs
	for i := 1; i <= 2; i++ {
		if unsafe.SliceData(a[i]) != unsafe.SliceData(b[i]) {
			t.Errorf("publication %d: the delta subscribers got two encodings: %s and %s", i, a[i], b[i])
		}
		if string(a[i]) == string(plain[i]) {
			t.Errorf("publication %d: a delta subscriber got the plain push %s", i, a[i])
		}
	}
	if !strings.HasSuffix(string(a[2]), `,"delta":true}`) || strings.Contains(string(a[1]), `"delta"`) {
		t.Fatalf("want the first whole and the second a delta: %s, %s", a[1], a[2])
	}
}
