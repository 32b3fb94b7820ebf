package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestDataChannelRelay: what a participant sends on a data channel of its
// publishing connection reaches the others on a channel labelled with its
// id, the protocol carrying its label; a participant who joins later gets
// the relay too.
func TestDataChannelRelay(t *testing.T) {
	l := newLab(t, Config{})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
	var mu sync.Mutex
	got := map[string][]string{} // receiver -> "label/protocol:message"
	listen := func(p *peer) {
		p.sub.OnDataChannel(func(dc *webrtc.DataChannel) {
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				mu.Lock()
				got[p.id] = append(got[p.id], dc.Label()+"/"+dc.Protocol()+":"+string(m.Data))
				mu.Unlock()
			})
		})
	}
	listen(b)
	var dc *webrtc.DataChannel
	a.publish(func(pc *webrtc.PeerConnection) {
		var err error
		if dc, err = pc.CreateDataChannel("chat", nil); err != nil {
			t.Fatal(err)
		}
	})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if dc.ReadyState() == webrtc.DataChannelStateOpen {
					_ = dc.SendText("hi")
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(got[id])
	}
	waitFor(t, "b receiving a's messages", 10*time.Second, func() bool { return count("b") > 3 })
	c := l.join("c", "r", false)
	listen(c)
	waitFor(t, "c receiving a's messages", 10*time.Second, func() bool { return count("c") > 3 })
	mu.Lock()
	defer mu.Unlock()
	if got["b"][0] != "a/chat:hi" {
		t.Fatalf("b got %q, want a/chat:hi", got["b"][0])
	}
}
