package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// offsets returns the offsets of the publications r received on channel,
// including those inside subscribe replies.
func (r *recorder) offsets(channel string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, m := range r.msgs {
		if res, ok := m["result"].(map[string]any); ok {
			if pubs, ok := res["publications"].([]any); ok {
				for _, p := range pubs {
					out = append(out, uint64(p.(map[string]any)["offset"].(float64)))
				}
			}
			continue
		}
		if m["channel"] == channel && m["offset"] != nil {
			out = append(out, uint64(m["offset"].(float64)))
		}
	}
	return out
}

// msg returns the i-th message written.
func (r *recorder) msg(i int) map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[i]
}

func subscribeSince(s *hub.Session, channel string, pos *protocol.StreamPosition) {
	cmd := map[string]any{"id": 1, "command": "subscribe", "channel": channel}
	if pos != nil {
		cmd["since"] = pos
	}
	b, _ := json.Marshal(cmd)
	s.HandleMessage(b)
}

func TestRecoveryOutcomes(t *testing.T) {
	h := newHub(t, hub.Config{HistorySize: 5})
	ctx := context.Background()
	var epoch string
	for i := 0; i < 8; i++ {
		pos, _ := h.Publish(ctx, "r", []byte(fmt.Sprint(i)), "api")
		epoch = pos.Epoch
	}
	tests := []struct {
		name      string
		since     protocol.StreamPosition
		recovered bool
		offsets   string
	}{
		{"within history", protocol.StreamPosition{Offset: 5, Epoch: epoch}, true, "[6 7 8]"},
		{"oldest kept boundary", protocol.StreamPosition{Offset: 3, Epoch: epoch}, true, "[4 5 6 7 8]"},
		{"up to date", protocol.StreamPosition{Offset: 8, Epoch: epoch}, true, "[]"},
		{"older than history", protocol.StreamPosition{Offset: 2, Epoch: epoch}, false, "[]"},
		{"other epoch", protocol.StreamPosition{Offset: 5, Epoch: "XXXX"}, false, "[]"},
		{"ahead of the channel", protocol.StreamPosition{Offset: 99, Epoch: epoch}, false, "[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			s := h.NewSession(r, hub.SessionInfo{})
			defer s.Close(protocol.DisconnectNormal)
			subscribeSince(s, "r", &tc.since)
			r.waitFor(t, "reply", func() bool { return len(r.msgs) == 1 })
			res := r.msg(0)["result"].(map[string]any)
			if res["recovered"] != tc.recovered || res["offset"] != 8.0 || res["epoch"] != epoch {
				t.Fatalf("result %v", res)
			}
			if got := fmt.Sprint(r.offsets("r")); got != tc.offsets {
				t.Fatalf("recovered offsets %s, want %s", got, tc.offsets)
			}
		})
	}
}

// TestRecoveryUnderSteadyPublishing cuts a subscriber off 100 times while a
// publisher runs; each time it resubscribes with the last offset it has.
// Across all its sessions it must hold every publication exactly once, in
// order.
func TestRecoveryUnderSteadyPublishing(t *testing.T) {
	cfg := hub.Config{HistorySize: 10000, Metrics: metrics.New(prometheus.NewRegistry()), ClientPublish: true}
	h := hub.New(cfg, memory.New(memory.Options{}), nil)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, _ := h.Publish(ctx, "steady", []byte(`0`), "api")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			_, _ = h.Publish(ctx, "steady", []byte(`1`), "api")
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var got []uint64
	pos := protocol.StreamPosition{Offset: first.Offset, Epoch: first.Epoch}
	got = append(got, first.Offset)
	for i := 0; i < 100; i++ {
		r := newRecorder()
		s := h.NewSession(r, hub.SessionInfo{})
		subscribeSince(s, "steady", &pos)
		r.waitFor(t, "reply", func() bool { return len(r.msgs) > 0 })
		if rec := r.msg(0)["result"].(map[string]any)["recovered"]; rec != true {
			t.Fatalf("round %d: not recovered: %v", i, r.msg(0))
		}
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		s.Close(protocol.DisconnectNormal) // cut off: what was queued is flushed
		r.waitFor(t, "close", func() bool { return r.closed != nil })
		offs := r.offsets("steady")
		got = append(got, offs...)
		if len(offs) > 0 {
			pos.Offset = offs[len(offs)-1]
		}
	}
	stop.Store(true)
	wg.Wait()
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("after %d came %d: lost or duplicated (%d received)", got[i-1], got[i], len(got))
		}
	}
	if len(got) < 200 {
		t.Fatalf("only %d publications seen; the publisher did not run", len(got))
	}
	_ = h.Shutdown(ctx)
}

func TestHistoryCommand(t *testing.T) {
	h := newHub(t, hub.Config{HistorySize: 3, HistoryMaxLimit: 10})
	ctx := context.Background()
	var epoch string
	for i := 1; i <= 4; i++ {
		p, _ := h.Publish(ctx, "h", []byte(fmt.Sprint(i)), "api")
		epoch = p.Epoch
	}
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	for _, cmd := range []string{
		`{"id":1,"command":"history","channel":"h"}`,
		`{"id":2,"command":"history","channel":"h","limit":1,"reverse":true}`,
		fmt.Sprintf(`{"id":3,"command":"history","channel":"h","since":{"offset":3,"epoch":%q}}`, epoch),
		`{"id":4,"command":"history","channel":"h","since":{"offset":3,"epoch":"nope"}}`,
		`{"id":5,"command":"history","channel":"h","limit":11}`,
		`{"id":6,"command":"history","channel":"h","limit":-1}`,
		`{"id":7,"command":"history","channel":"bad name"}`,
	} {
		s.HandleMessage([]byte(cmd))
	}
	r.waitFor(t, "7 replies", func() bool { return len(r.msgs) == 7 })
	want := []string{
		`map[id:1 result:map[epoch:%s offset:4 publications:[map[channel:h data:2 offset:2] map[channel:h data:3 offset:3] map[channel:h data:4 offset:4]]]]`,
		`map[id:2 result:map[epoch:%s offset:4 publications:[map[channel:h data:4 offset:4]]]]`,
		`map[id:3 result:map[epoch:%s offset:4 publications:[map[channel:h data:4 offset:4]]]]`,
	}
	for i, w := range want {
		if got := fmt.Sprint(r.msgs[i]); got != fmt.Sprintf(w, epoch) {
			t.Errorf("reply %d: %s", i+1, got)
		}
	}
	for i, code := range []float64{412, 400, 400, 422} {
		if c := r.msgs[3+i]["error"].(map[string]any)["code"]; c != code {
			t.Errorf("reply %d: %v, want code %v", 4+i, r.msgs[3+i], code)
		}
	}
}

func TestPresenceAndJoinLeave(t *testing.T) {
	h := newHub(t, hub.Config{Presence: true, JoinLeave: true})
	ctx := context.Background()
	ra, rb := newRecorder(), newRecorder()
	a := h.NewSession(ra, hub.SessionInfo{User: "alice"})
	b := h.NewSession(rb, hub.SessionInfo{})
	send(a, `{"id":1,"command":"subscribe","channel":"p"}`)
	ra.waitFor(t, "own join", func() bool { return len(ra.msgs) == 2 })
	if j := ra.msgs[1]["join"].(map[string]any); j["client"] != a.ID() || j["user"] != "alice" {
		t.Fatalf("join push %v", ra.msgs[1])
	}
	send(b, `{"id":1,"command":"subscribe","channel":"p"}`)
	ra.waitFor(t, "b's join", func() bool { return len(ra.msgs) == 3 })
	list, err := h.Presence(ctx, "p")
	if err != nil || len(list) != 2 {
		t.Fatalf("presence %v %v", list, err)
	}
	st, _ := h.PresenceStats(ctx, "p")
	if st != (broker.PresenceStats{Clients: 2, Users: 1}) {
		t.Fatalf("stats %+v", st)
	}
	b.PeerGone() // dropped abruptly
	ra.waitFor(t, "b's leave", func() bool { return len(ra.msgs) == 4 })
	if l := ra.msgs[3]["leave"].(map[string]any); l["client"] != b.ID() {
		t.Fatalf("leave push %v", ra.msgs[3])
	}
	if st, _ := h.PresenceStats(ctx, "p"); st.Clients != 1 {
		t.Fatalf("stats after leave %+v", st)
	}
	send(a, `{"id":2,"command":"presence","channel":"p"}`)
	ra.waitFor(t, "presence reply", func() bool { return len(ra.msgs) == 5 })
	res := ra.msgs[4]["result"].(map[string]any)
	if res["num_clients"] != 1.0 || res["num_users"] != 1.0 {
		t.Fatalf("presence reply %v", ra.msgs[4])
	}
}

func TestPresenceDisabled(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"presence","channel":"p"}`)
	r.waitFor(t, "reply", func() bool { return len(r.msgs) == 1 })
	if c := r.msgs[0]["error"].(map[string]any)["code"]; c != 403.0 {
		t.Fatalf("%v", r.msgs[0])
	}
}

func TestStreamSubscribeQueuesNoticeFirst(t *testing.T) {
	h := newHub(t, hub.Config{HistorySize: 2})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		_, _ = h.Publish(ctx, "n", []byte(`1`), "api")
	}
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	res, perr := s.Subscribe(ctx, "n", &broker.Position{Offset: 1, Epoch: "old"}, func(res hub.SubscribeResult) []hub.Message {
		return []hub.Message{{Data: []byte(`{"notice":"unrecovered"}`), Channel: "n"}}
	})
	if perr != nil || res.Recovered || res.Position.Offset != 5 {
		t.Fatalf("%+v %v", res, perr)
	}
	_, _ = h.Publish(ctx, "n", []byte(`2`), "api")
	r.waitFor(t, "notice and live publication", func() bool { return len(r.msgs) == 2 })
	if r.msg(0)["notice"] != "unrecovered" || r.msg(1)["offset"] != 6.0 {
		t.Fatalf("%v", r.msgs)
	}
	// Recovered publications come as pushes, in order.
	r2 := newRecorder()
	s2 := h.NewSession(r2, hub.SessionInfo{})
	res, _ = s2.Subscribe(ctx, "n", &res.Position, nil)
	r2.waitFor(t, "recovered push", func() bool { return len(r2.msgs) == 1 })
	if !res.Recovered || r2.msg(0)["offset"] != 6.0 {
		t.Fatalf("%+v %v", res, r2.msgs)
	}
}

// TestRecoveryLargerThanQueue: a backlog bigger than the outbound queue's
// bounds is still recovered (the bounds are for live traffic), while a
// history request that large is refused with 413 instead of closing.
func TestRecoveryLargerThanQueue(t *testing.T) {
	h := newHub(t, hub.Config{HistorySize: 200, QueueMaxBytes: 64 << 10})
	ctx := context.Background()
	payload := []byte(`"` + strings.Repeat("x", 2000) + `"`)
	first, _ := h.Publish(ctx, "big", payload, "api")
	for i := 0; i < 99; i++ {
		_, _ = h.Publish(ctx, "big", payload, "api")
	}
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	subscribeSince(s, "big", &protocol.StreamPosition{Offset: first.Offset, Epoch: first.Epoch})
	r.waitFor(t, "reply", func() bool { return len(r.msgs) == 1 })
	if rec := r.msg(0)["result"].(map[string]any)["recovered"]; rec != true || len(r.offsets("big")) != 99 {
		t.Fatalf("recovered=%v with %d publications", rec, len(r.offsets("big")))
	}
	if r.closed != nil {
		t.Fatalf("closed with %v", r.closed)
	}
	// Live publications keep flowing after the large recovery.
	_, _ = h.Publish(ctx, "big", []byte(`1`), "api")
	r.waitFor(t, "live publication", func() bool { return len(r.msgs) == 2 })
	send(s, `{"id":2,"command":"history","channel":"big","limit":100}`)
	r.waitFor(t, "history error", func() bool { return len(r.msgs) == 3 })
	if c := r.msg(2)["error"].(map[string]any)["code"]; c != 413.0 {
		t.Fatalf("history reply %v", r.msg(2))
	}
}

func TestEphemeralSessionStaysOutOfPresence(t *testing.T) {
	h := newHub(t, hub.Config{Presence: true, JoinLeave: true})
	ctx := context.Background()
	member := newRecorder()
	m := h.NewSession(member, hub.SessionInfo{})
	send(m, `{"command":"subscribe","channel":"e"}`)
	member.waitFor(t, "own join", func() bool { return len(member.msgs) == 1 })
	poll := h.NewSession(newRecorder(), hub.SessionInfo{Ephemeral: true})
	if _, perr := poll.Subscribe(ctx, "e", nil, nil); perr != nil {
		t.Fatal(perr)
	}
	poll.PeerGone()
	_, _ = h.Publish(ctx, "e", []byte(`1`), "api")
	member.waitFor(t, "publication", func() bool { return len(member.msgs) == 2 })
	if member.msg(1)["offset"] != 1.0 {
		t.Fatalf("the poller joined or left: %v", member.msg(1))
	}
	if st, _ := h.PresenceStats(ctx, "e"); st.Clients != 1 {
		t.Fatalf("presence %+v", st)
	}
}

// TestLiveDeliveryIsDeduplicatedAndResets plays a remote broker: a live
// copy of a publication the subscribe position already covered is dropped,
// and a publication of a new epoch (history lost) comes after a reset push.
func TestLiveDeliveryIsDeduplicatedAndResets(t *testing.T) {
	h := newHub(t, hub.Config{})
	ctx := context.Background()
	pos, _ := h.Publish(ctx, "d", []byte(`1`), "api") // offset 1, stored
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"subscribe","channel":"d"}`)
	r.waitFor(t, "reply", func() bool { return len(r.msgs) == 1 })
	// The live copy of offset 1 arrives late: dropped.
	h.HandlePublication("d", broker.Publication{Offset: 1, Data: []byte(`1`)}, pos.Epoch)
	h.HandlePublication("d", broker.Publication{Offset: 2, Data: []byte(`2`)}, pos.Epoch)
	h.HandlePublication("d", broker.Publication{Offset: 2, Data: []byte(`2`)}, pos.Epoch) // duplicate
	// The broker lost its data: offsets start again in a new epoch.
	h.HandlePublication("d", broker.Publication{Offset: 1, Data: []byte(`"new"`)}, "NEWEPOCH")
	r.waitFor(t, "4 messages", func() bool { return len(r.msgs) == 4 })
	want := []string{
		`map[channel:d data:2 offset:2]`,
		`map[channel:d reset:map[epoch:NEWEPOCH offset:0]]`,
		`map[channel:d data:new offset:1]`,
	}
	for i, w := range want {
		if got := fmt.Sprint(r.msg(i + 1)); got != w {
			t.Errorf("message %d: %s, want %s", i+1, got, w)
		}
	}
}
