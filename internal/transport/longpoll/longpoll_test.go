package longpoll_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/transport/longpoll"
)

// env is a hub with the polling endpoint on a loopback HTTP server.
type env struct {
	t   *testing.T
	hub *hub.Hub
	url string
}

func newEnv(t *testing.T, cfg hub.Config, opts longpoll.Options) *env {
	t.Helper()
	cfg.Metrics = metrics.New(prometheus.NewRegistry())
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 1000
	}
	if cfg.HistoryTTL == 0 {
		cfg.HistoryTTL = time.Minute
	}
	var p *memory.Presence
	if cfg.Presence {
		p = memory.NewPresence()
	}
	var h *hub.Hub
	if p != nil {
		h = hub.New(cfg, memory.New(memory.Options{}), p)
	} else {
		h = hub.New(cfg, memory.New(memory.Options{}), nil)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts.Logger = cfg.Logger
	srv := httptest.NewServer(longpoll.NewHandler(h, opts))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	})
	return &env{t: t, hub: h, url: srv.URL + "/poll"}
}

// push is one publication in an answer.
type push struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Offset  uint64          `json:"offset"`
}

// answer is a decoded /poll answer, success or error.
type answer struct {
	Status      int
	Header      http.Header
	Messages    []push   `json:"messages"`
	Cursor      string   `json:"cursor"`
	Unrecovered []string `json:"unrecovered"`
	Channels    []struct {
		Channel string `json:"channel"`
		Offset  uint64 `json:"offset"`
		Epoch   string `json:"epoch"`
	} `json:"channels"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// pollCtx polls the channels from cursor ("" for none) with the raw timeout
// parameter ("" for none).
func (e *env) pollCtx(ctx context.Context, channels []string, cursor, timeout string) (answer, error) {
	q := url.Values{"channel": channels}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if timeout != "" {
		q.Set("timeout", timeout)
	}
	return get(ctx, e.url+"?"+q.Encode(), nil)
}

func get(ctx context.Context, u string, header http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return answer{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return a, nil
}

// poll is pollCtx that fails the test on a transport error or a status
// other than 200.
func (e *env) poll(channels []string, cursor, timeout string) answer {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := e.pollCtx(ctx, channels, cursor, timeout)
	if err != nil {
		e.t.Fatal(err)
	}
	if a.Status != 200 || a.Cursor == "" || a.Messages == nil {
		e.t.Fatalf("poll %v: status %d, answer %+v", channels, a.Status, a)
	}
	return a
}

func (e *env) publish(channel string, v any) uint64 {
	e.t.Helper()
	b, _ := json.Marshal(v)
	pos, err := e.hub.Publish(context.Background(), channel, b, "api")
	if err != nil {
		e.t.Fatal(err)
	}
	return pos.Offset
}

// waitSessions waits until the hub has no session left (every waiting poll
// has ended).
func (e *env) waitSessions() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.Info().Connections != 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d poll sessions still open", e.hub.Info().Connections)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func offsets(msgs []push, channel string) []uint64 {
	var out []uint64
	for _, m := range msgs {
		if m.Channel == channel {
			out = append(out, m.Offset)
		}
	}
	return out
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func TestFirstPollAnswersAtOnce(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	e.publish("a", 1)
	start := time.Now()
	a := e.poll([]string{"a"}, "", "30")
	if len(a.Messages) != 0 || a.Unrecovered != nil {
		t.Fatalf("first poll: %+v", a)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("first poll waited %s", d)
	}
	if cc := a.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	// The cursor is at the channel's top: only what follows is returned.
	e.publish("a", 2)
	b := e.poll([]string{"a"}, a.Cursor, "0")
	if got := offsets(b.Messages, "a"); !slices.Equal(got, []uint64{2}) || string(b.Messages[0].Data) != "2" {
		t.Fatalf("second poll: %+v", b)
	}
}

func TestPlainPollingNeverWaits(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	a := e.poll([]string{"a"}, "", "0")
	start := time.Now()
	b := e.poll([]string{"a"}, a.Cursor, "0")
	if len(b.Messages) != 0 || b.Cursor != a.Cursor {
		t.Fatalf("empty plain poll: %+v (cursor was %q)", b, a.Cursor)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout=0 waited %s", d)
	}
	if n := e.hub.Info().Connections; n != 0 {
		t.Fatalf("plain poll left %d sessions", n)
	}
}

func TestLongPollWakesOnPublication(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	a := e.poll([]string{"a"}, "", "")
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.publish("a", "hello")
	}()
	start := time.Now()
	b := e.poll([]string{"a"}, a.Cursor, "20")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("long poll answered after %s, the publication came after 200ms", d)
	}
	if got := offsets(b.Messages, "a"); !slices.Equal(got, []uint64{1}) || string(b.Messages[0].Data) != `"hello"` {
		t.Fatalf("woken poll: %+v", b)
	}
	e.waitSessions()
}

func TestLongPollBatchesABurst(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{BatchDelay: 300 * time.Millisecond})
	c := e.poll([]string{"a"}, "", "0").Cursor
	go func() {
		time.Sleep(100 * time.Millisecond)
		for i := range 3 {
			e.publish("a", i)
		}
	}()
	r := e.poll([]string{"a"}, c, "20")
	if !slices.Equal(offsets(r.Messages, "a"), []uint64{1, 2, 3}) {
		t.Fatalf("burst: %+v", r)
	}
}

func TestLongPollTimesOutEmpty(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	a := e.poll([]string{"a"}, "", "")
	start := time.Now()
	b := e.poll([]string{"a"}, a.Cursor, "1")
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("timeout=1 answered after %s", d)
	}
	if len(b.Messages) != 0 || b.Cursor != a.Cursor || b.Unrecovered != nil {
		t.Fatalf("timed out poll: %+v (cursor was %q)", b, a.Cursor)
	}
	e.waitSessions()
}

func TestTwoChannelsOneCursor(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	chans := []string{"b", "a"}
	a := e.poll(chans, "", "0")
	e.publish("b", "b1")
	r1 := e.poll(chans, a.Cursor, "5")
	if !slices.Equal(offsets(r1.Messages, "b"), []uint64{1}) || len(r1.Messages) != 1 {
		t.Fatalf("after publishing on b: %+v", r1)
	}
	e.publish("a", "a1")
	e.publish("a", "a2")
	e.publish("b", "b2")
	// The order of the channel parameters does not matter.
	r2 := e.poll([]string{"a", "b"}, r1.Cursor, "5")
	if !slices.Equal(offsets(r2.Messages, "a"), []uint64{1, 2}) || !slices.Equal(offsets(r2.Messages, "b"), []uint64{2}) {
		t.Fatalf("after publishing on both: %+v", r2)
	}
	// A wait on both channels is woken by either.
	go func() {
		time.Sleep(100 * time.Millisecond)
		e.publish("a", "a3")
	}()
	r3 := e.poll(chans, r2.Cursor, "20")
	if !slices.Equal(offsets(r3.Messages, "a"), []uint64{3}) || len(r3.Messages) != 1 {
		t.Fatalf("woken two-channel poll: %+v", r3)
	}
}

func TestCursorFromAnotherServerIsUnrecovered(t *testing.T) {
	e1 := newEnv(t, hub.Config{}, longpoll.Options{})
	e2 := newEnv(t, hub.Config{}, longpoll.Options{})
	chans := []string{"a", "b"}
	e1.publish("a", 1)
	c1 := e1.poll(chans, "", "0").Cursor
	e2.publish("a", 1)
	e2.publish("a", 2)
	r := e2.poll(chans, c1, "20") // must not wait
	if !slices.Equal(r.Unrecovered, []string{"a", "b"}) || len(r.Messages) != 0 {
		t.Fatalf("foreign cursor: %+v", r)
	}
	// The new cursor is e2's current position.
	e2.publish("a", 3)
	r2 := e2.poll(chans, r.Cursor, "5")
	if !slices.Equal(offsets(r2.Messages, "a"), []uint64{3}) || r2.Unrecovered != nil {
		t.Fatalf("after unrecovered: %+v", r2)
	}
}

func TestCursorOlderThanHistoryIsUnrecovered(t *testing.T) {
	e := newEnv(t, hub.Config{HistorySize: 3}, longpoll.Options{})
	chans := []string{"a", "b"}
	c := e.poll(chans, "", "0").Cursor
	for i := range 10 {
		e.publish("a", i)
	}
	e.publish("b", "kept")
	r := e.poll(chans, c, "5")
	if !slices.Equal(r.Unrecovered, []string{"a"}) {
		t.Fatalf("want a unrecovered, got %+v", r)
	}
	// b is still recoverable: its publication comes in the same answer.
	if len(r.Messages) != 1 || r.Messages[0].Channel != "b" || r.Messages[0].Offset != 1 {
		t.Fatalf("recoverable channel in the same answer: %+v", r)
	}
	e.publish("a", "next")
	r2 := e.poll(chans, r.Cursor, "5")
	if !slices.Equal(offsets(r2.Messages, "a"), []uint64{11}) || r2.Unrecovered != nil {
		t.Fatalf("after unrecovered: %+v", r2)
	}
}

func TestAnswerIsCapped(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{MaxMessages: 5})
	c := e.poll([]string{"a"}, "", "0").Cursor
	for i := range 12 {
		e.publish("a", i)
	}
	var got []uint64
	for _, want := range []int{5, 5, 2} {
		r := e.poll([]string{"a"}, c, "0")
		if len(r.Messages) != want {
			t.Fatalf("answer of %d messages, want %d: %+v", len(r.Messages), want, r)
		}
		got = append(got, offsets(r.Messages, "a")...)
		c = r.Cursor
	}
	if !slices.Equal(got, seq(1, 12)) {
		t.Fatalf("capped answers carried %v", got)
	}

	// The byte cap, with room for at least one publication per answer.
	e2 := newEnv(t, hub.Config{}, longpoll.Options{MaxBytes: 100})
	c = e2.poll([]string{"a"}, "", "0").Cursor
	big := make([]byte, 150)
	for i := range big {
		big[i] = 'x'
	}
	e2.publish("a", string(big))
	e2.publish("a", "small")
	r := e2.poll([]string{"a"}, c, "0")
	if !slices.Equal(offsets(r.Messages, "a"), []uint64{1}) {
		t.Fatalf("byte-capped answer: %+v", r)
	}
	r = e2.poll([]string{"a"}, r.Cursor, "0")
	if !slices.Equal(offsets(r.Messages, "a"), []uint64{2}) {
		t.Fatalf("answer after the byte-capped one: %+v", r)
	}
}

// TestBacklogLargerThanTheQueue checks that a backlog bigger than a
// session's outbound queue is paginated, not dropped as a slow consumer.
func TestBacklogLargerThanTheQueue(t *testing.T) {
	e := newEnv(t, hub.Config{QueueMaxBytes: 16 << 10}, longpoll.Options{MaxBytes: 64 << 10})
	c := e.poll([]string{"a"}, "", "0").Cursor
	big := strings.Repeat("x", 4000)
	for range 100 {
		e.publish("a", big)
	}
	var got []uint64
	for polls := 0; len(got) < 100; polls++ {
		if polls > 20 {
			t.Fatalf("after %d polls only %d publications", polls, len(got))
		}
		r := e.poll([]string{"a"}, c, "5")
		if r.Unrecovered != nil || len(r.Messages) == 0 {
			t.Fatalf("poll %d: %d messages, unrecovered %v", polls, len(r.Messages), r.Unrecovered)
		}
		got = append(got, offsets(r.Messages, "a")...)
		c = r.Cursor
	}
	if !slices.Equal(got, seq(1, 100)) {
		t.Fatalf("received %v", got)
	}
}

func TestClientGoneEndsTheWait(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	c := e.poll([]string{"a"}, "", "0").Cursor
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.pollCtx(ctx, []string{"a"}, c, "60")
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.Info().Connections == 0 { // the poll is waiting
		if time.Now().After(deadline) {
			t.Fatal("the poll never waited")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled poll: %v", err)
	}
	e.waitSessions()
}

func TestDrainingAnswers503(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	c := e.poll([]string{"a"}, "", "0").Cursor
	// A poll waiting when the hub shuts down is answered at once.
	type result struct {
		a   answer
		err error
	}
	waiting := make(chan result, 1)
	go func() {
		a, err := e.pollCtx(context.Background(), []string{"a"}, c, "60")
		waiting <- result{a, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.Info().Connections == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the poll never waited")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-waiting:
		if r.err != nil || r.a.Status != 200 || len(r.a.Messages) != 0 || r.a.Cursor != c {
			t.Fatalf("poll waiting at shutdown: %+v %v", r.a, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiting poll was not answered at shutdown")
	}
	a, err := e.pollCtx(context.Background(), []string{"a"}, c, "60")
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != 503 || a.Error == nil || a.Error.Code != 503 || a.Header.Get("Retry-After") == "" {
		t.Fatalf("poll while draining: %+v", a)
	}
}

func TestJoinLeaveDoNotWakeAPoll(t *testing.T) {
	e := newEnv(t, hub.Config{Presence: true, JoinLeave: true}, longpoll.Options{})
	c := e.poll([]string{"a"}, "", "0").Cursor
	go func() {
		time.Sleep(100 * time.Millisecond)
		other := e.hub.NewSession(nopTransport{}, hub.SessionInfo{})
		if _, perr := other.Subscribe(context.Background(), "a", nil, nil); perr != nil {
			t.Error(perr)
		}
		other.Close(protocol.DisconnectNormal)
	}()
	r := e.poll([]string{"a"}, c, "1")
	if len(r.Messages) != 0 || r.Cursor != c {
		t.Fatalf("join/leave reached a poll: %+v", r)
	}
}

// TestNamespaceWithoutRecovery checks that a namespace whose recovery
// option is off (it governs reconnecting subscribers) still carries a
// poller from one request to the next while history holds its position.
func TestNamespaceWithoutRecovery(t *testing.T) {
	rules, err := auth.NewRules(auth.Namespace{HistorySize: 100, HistoryTTL: time.Minute, Recovery: true},
		[]auth.Namespace{{Name: "live", HistorySize: 10, HistoryTTL: time.Minute, Recovery: false}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, hub.Config{Rules: rules}, longpoll.Options{})
	c := e.poll([]string{"live:x"}, "", "0").Cursor
	e.publish("live:x", 1)
	r := e.poll([]string{"live:x"}, c, "0")
	if !slices.Equal(offsets(r.Messages, "live:x"), []uint64{1}) || r.Unrecovered != nil {
		t.Fatalf("plain poll: %+v", r)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		e.publish("live:x", 2)
	}()
	r = e.poll([]string{"live:x"}, r.Cursor, "20")
	if !slices.Equal(offsets(r.Messages, "live:x"), []uint64{2}) || r.Unrecovered != nil {
		t.Fatalf("long poll: %+v", r)
	}
}

// TestRecoveryUnderLoad is the stress test of the cursor: a publisher at a
// steady rate on two channels, a poller looping with its cursor, mixing
// plain polls, long polls and polls it cuts off mid-wait (whose answers it
// never sees). Across all answers every publication must arrive exactly
// once, in order.
func TestRecoveryUnderLoad(t *testing.T) {
	for _, maxMsgs := range []int{0, 7} {
		t.Run("max_messages="+strconv.Itoa(maxMsgs), func(t *testing.T) {
			e := newEnv(t, hub.Config{}, longpoll.Options{MaxMessages: maxMsgs, BatchDelay: time.Millisecond})
			chans := []string{"a", "b"}
			cur := e.poll(chans, "", "0").Cursor

			// The publisher runs until the poller has made enough polls;
			// then total is how many it published on each channel.
			stop := make(chan struct{})
			var total uint64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(3 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					for _, ch := range chans {
						if _, err := e.hub.Publish(context.Background(), ch, []byte(strconv.FormatUint(total+1, 10)), "api"); err != nil {
							t.Error(err)
							return
						}
					}
					total++
				}
			}()

			got := map[string][]uint64{}
			polls, cut := 0, 0
			stopped := false
			deadline := time.Now().Add(60 * time.Second)
			for !stopped || uint64(len(got["a"])) < total || uint64(len(got["b"])) < total {
				if time.Now().After(deadline) {
					t.Fatalf("after %d polls: a %d, b %d publications", polls, len(got["a"]), len(got["b"]))
				}
				if polls == 200 {
					close(stop)
					wg.Wait()
					stopped = true
				}
				polls++
				timeout := []string{"0", "1", "2", ""}[polls%4]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				switch {
				case stopped: // catching up: nothing is published any more
					timeout = "0"
				case polls%5 == 2 || polls%5 == 4: // cut off mid-wait: the answer, if any, is lost
					cancel()
					timeout = "20"
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(1+polls%4)*time.Millisecond)
				}
				a, err := e.pollCtx(ctx, chans, cur, timeout)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("poll %d: %v", polls, err)
					}
					cut++
					continue
				}
				if a.Status != 200 || a.Unrecovered != nil {
					t.Fatalf("poll %d: %+v", polls, a)
				}
				if stopped && len(a.Messages) == 0 {
					break // history holds nothing more for this cursor
				}
				for _, m := range a.Messages {
					if string(m.Data) != strconv.FormatUint(m.Offset, 10) {
						t.Fatalf("poll %d: %s@%d carries %s", polls, m.Channel, m.Offset, m.Data)
					}
					got[m.Channel] = append(got[m.Channel], m.Offset)
				}
				cur = a.Cursor
			}
			perChannel := total
			for _, ch := range chans {
				if !slices.Equal(got[ch], seq(1, perChannel)) {
					lost, dup := countLostDup(got[ch], perChannel)
					t.Errorf("channel %s: lost %d, duplicated %d, out of order from index %d", ch, lost, dup, firstDeviation(got[ch]))
				}
			}
			if cut == 0 {
				t.Error("no poll was cut off")
			}
			t.Logf("%d polls, %d cut off, %d publications per channel", polls, cut, perChannel)
			e.waitSessions()
		})
	}
}

// firstDeviation returns the index of the first offset that is not the one
// after its predecessor (-1 when none).
func firstDeviation(got []uint64) int {
	for i, o := range got {
		if o != uint64(i)+1 {
			return i
		}
	}
	return -1
}

func countLostDup(got []uint64, n uint64) (lost, dup int) {
	seen := map[uint64]int{}
	for _, o := range got {
		seen[o]++
	}
	for i := uint64(1); i <= n; i++ {
		switch c := seen[i]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	return lost, dup
}

// nopTransport is a session transport that discards everything.
type nopTransport struct{}

func (nopTransport) Name() string                      { return "test" }
func (nopTransport) WriteMessages([]hub.Message) error { return nil }
func (nopTransport) Close(protocol.Disconnect) error   { return nil }

// TestSince starts a poll at positions held from elsewhere (another
// transport): a position in the channel's epoch gets what followed it, one
// of another epoch is unrecovered, a channel without one starts from now,
// and the answer's positions can be sent as since again.
func TestSince(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	for i := 1; i <= 3; i++ {
		e.publish("a", i)
		e.publish("b", i)
		e.publish("c", i)
	}
	first := e.poll([]string{"a", "b", "c"}, "", "0")
	if len(first.Channels) != 3 || first.Channels[0].Channel != "a" || first.Channels[0].Offset != 3 || first.Channels[0].Epoch == "" {
		t.Fatalf("first poll positions: %+v", first.Channels)
	}
	epochA := first.Channels[0].Epoch
	q := url.Values{"channel": {"c", "b", "a"}, "since": {"", "1:other", "1:" + epochA}, "timeout": {"5"}}
	r, err := get(context.Background(), e.url+"?"+q.Encode(), nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("%v %+v", err, r)
	}
	if !slices.Equal(offsets(r.Messages, "a"), []uint64{2, 3}) || len(offsets(r.Messages, "c")) != 0 || !slices.Equal(r.Unrecovered, []string{"b"}) {
		t.Fatalf("since poll: %+v", r)
	}
	for i, want := range []uint64{3, 3, 3} {
		if r.Channels[i].Offset != want || r.Channels[i].Epoch != first.Channels[i].Epoch {
			t.Fatalf("positions %+v, want those of %+v", r.Channels, first.Channels)
		}
	}
	// The positions as since: a waiting poll that wakes on the next
	// publication, in any channel.
	e.publish("c", 4)
	q = url.Values{"channel": {"a", "b", "c"}, "timeout": {"5"}}
	for _, p := range r.Channels {
		q.Add("since", fmt.Sprintf("%d:%s", p.Offset, p.Epoch))
	}
	r2, err := get(context.Background(), e.url+"?"+q.Encode(), nil)
	if err != nil || r2.Status != 200 || !slices.Equal(offsets(r2.Messages, "c"), []uint64{4}) || len(r2.Messages) != 1 || r2.Unrecovered != nil {
		t.Fatalf("second since poll: %v %+v", err, r2)
	}
	// Both a cursor and since: refused.
	q.Set("cursor", r2.Cursor)
	bad, err := get(context.Background(), e.url+"?"+q.Encode(), nil)
	if err != nil || bad.Status != 400 || bad.Error == nil || bad.Error.Code != 400 {
		t.Fatalf("cursor and since: %v %+v", err, bad)
	}
}

// TestSinceAhead treats a position past the channel's top (a client of
// another server that shares no broker) as unrecovered.
func TestSinceAhead(t *testing.T) {
	e := newEnv(t, hub.Config{}, longpoll.Options{})
	e.publish("a", 1)
	ep := e.poll([]string{"a"}, "", "0").Channels[0].Epoch
	q := url.Values{"channel": {"a"}, "since": {"9:" + ep}, "timeout": {"5"}}
	r, err := get(context.Background(), e.url+"?"+q.Encode(), nil)
	if err != nil || r.Status != 200 || !slices.Equal(r.Unrecovered, []string{"a"}) || r.Channels[0].Offset != 1 {
		t.Fatalf("%v %+v", err, r)
	}
}
