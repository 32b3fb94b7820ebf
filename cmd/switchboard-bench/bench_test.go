package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h hist
	for v := uint64(1); v <= 100000; v++ {
		h.record(v)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100000
		got := float64(h.quantile(q))
		if math.Abs(got-want)/want > 0.02 {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", q, got, want)
		}
	}
	if h.Max != 100000 || h.N != 100000 {
		t.Errorf("max %d n %d", h.Max, h.N)
	}
	// The wire form keeps everything.
	b, err := json.Marshal(h.sparse())
	if err != nil {
		t.Fatal(err)
	}
	var s sparseHist
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if back := s.hist(); *back != h {
		t.Error("histogram changed through its wire form")
	}
}

func TestHistIndexMonotonic(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v += 1 + v/50 {
		i := histIndex(v)
		if i < prev {
			t.Fatalf("index of %d is %d, below %d", v, i, prev)
		}
		if lo := histValue(i); v >= 64 && math.Abs(float64(lo)-float64(v))/float64(v) > 0.02 {
			t.Fatalf("bucket value %d too far from %d", lo, v)
		}
		prev = i
	}
}

func TestParseCPUList(t *testing.T) {
	tests := map[string]struct {
		in   string
		want []int
		bad  bool
	}{
		"single": {in: "1", want: []int{1}},
		"range":  {in: "0-2", want: []int{0, 1, 2}},
		"list":   {in: "0,3", want: []int{0, 3}},
		"empty":  {in: "", bad: true},
		"bad":    {in: "x", bad: true},
		"inv":    {in: "3-1", bad: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseCPUList(tc.in)
			if tc.bad != (err != nil) {
				t.Fatalf("err = %v", err)
			}
			if !tc.bad && !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestShare(t *testing.T) {
	for _, total := range []int{1, 7, 1000, 19000} {
		for n := 1; n <= 5 && n <= total; n++ {
			next := 0
			for i := 0; i < n; i++ {
				first, count := share(total, n, i)
				if first != next || count < total/n {
					t.Fatalf("share(%d,%d,%d) = %d,%d", total, n, i, first, count)
				}
				next += count
			}
			if next != total {
				t.Fatalf("share(%d,%d) covers %d", total, n, next)
			}
		}
	}
}

// serverFrame returns an unmasked server text frame.
func serverFrame(payload string) []byte {
	n := len(payload)
	b := []byte{0x81}
	switch {
	case n < 126:
		b = append(b, byte(n))
	default:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	return append(b, payload...)
}

func TestProcessPublications(t *testing.T) {
	w := &client{cfg: clientConfig{Kind: kindSwitchboard}}
	p := &poller{w: w}
	c := &conn{w: w, p: p, state: stOpen, setup: true, hasOffset: true, lastOffset: 4, epoch: "e"}
	now := time.Now().UnixNano()
	sent := now - int64(3*time.Millisecond)
	data := string(payload(sent, 7, 200)) // over 125 bytes: extended length
	var stream []byte
	stream = append(stream, serverFrame(`{"channel":"news","data":`+data+`,"offset":5}`)...)
	stream = append(stream, serverFrame(`{"channel":"news","data":`+data+`,"offset":8}`)...)
	stream = append(stream, serverFrame(`{"channel":"news","data":`+string(payload(sent, 0, 0))+`,"offset":9}`)...)
	// Feed it in two pieces split inside a frame: nothing may be lost.
	cut := len(stream) - 10
	used := p.process(c, stream[:cut], now)
	rest := append(append([]byte(nil), stream[used:cut]...), stream[cut:]...)
	if used2 := p.process(c, rest, now); used2 != len(rest) {
		t.Fatalf("second piece: used %d of %d", used2, len(rest))
	}
	if p.st.Received != 2 || p.st.Warm != 1 {
		t.Errorf("received %d warm %d, want 2 and 1", p.st.Received, p.st.Warm)
	}
	if p.st.Gaps != 2 {
		t.Errorf("gaps %d, want 2 (offsets 6 and 7)", p.st.Gaps)
	}
	if !c.warmed.Load() {
		t.Error("warm-up publication not noticed")
	}
	if got := p.st.Lat.quantile(0.5); got < 2900 || got > 3100 {
		t.Errorf("latency %d µs, want about 3000", got)
	}
}

func TestSubscribeReplyGap(t *testing.T) {
	w := &client{cfg: clientConfig{Kind: kindSwitchboard}, sem: make(chan struct{}, 1), setupDone: make(chan struct{}, 1), failures: map[string]int{}}
	p := &poller{w: w}
	c := &conn{w: w, p: p, state: stSubscribing, setup: true, hasOffset: true, lastOffset: 10, epoch: "e"}
	p.process(c, serverFrame(`{"id":2,"result":{"channel":"rc","offset":14,"epoch":"e"}}`), time.Now().UnixNano())
	if c.state != stOpen || p.st.ResubGapped != 4 {
		t.Errorf("state %d, resub gap %d; want open and 4", c.state, p.st.ResubGapped)
	}
	c.state = stSubscribing
	p.process(c, serverFrame(`{"id":2,"result":{"channel":"rc","offset":1,"epoch":"f"}}`), time.Now().UnixNano())
	if p.st.EpochChanged != 1 {
		t.Errorf("epoch change not counted")
	}
}

func TestClientFrameMasked(t *testing.T) {
	msg := []byte(strings.Repeat("a", 300))
	f := frame(0x1, msg)
	if f[0] != 0x81 || f[1] != 0x80|126 || binary.BigEndian.Uint16(f[2:]) != 300 {
		t.Fatalf("bad header % x", f[:4])
	}
	key, body := f[4:8], append([]byte(nil), f[8:]...)
	maskBytes(body, key)
	if string(body) != string(msg) {
		t.Error("payload does not unmask to the message")
	}
}

func TestCheckUpgrade(t *testing.T) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
	if err := checkUpgrade([]byte(ok), key); err != nil {
		t.Errorf("valid answer refused: %v", err)
	}
	if err := checkUpgrade([]byte("HTTP/1.1 403 Forbidden\r\n"), key); err == nil {
		t.Error("403 accepted")
	}
}

func TestMetricsJSONOrderAndNull(t *testing.T) {
	var ms metrics
	ms.add("b", 1.5, "", "")
	ms.add("a", math.NaN(), "", "")
	b, err := json.Marshal(ms)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"b":1.5,"a":null}` {
		t.Errorf("got %s", b)
	}
}

func TestServerLatencyQuantile(t *testing.T) {
	const k = `switchboard_delivery_latency_seconds_bucket{le="`
	before := map[string]float64{k + `0.001"}`: 0, k + `0.01"}`: 0, k + `+Inf"}`: 0}
	after := map[string]float64{k + `0.001"}`: 50, k + `0.01"}`: 100, k + `+Inf"}`: 100}
	got := serverLatencyQuantile(before, after, 0.75)
	if math.Abs(got-5.5) > 0.01 { // halfway through the 1-10 ms bucket
		t.Errorf("p75 = %v ms, want 5.5", got)
	}
	if !math.IsNaN(serverLatencyQuantile(before, before, 0.5)) {
		t.Error("no observations should give NaN")
	}
}

func TestRenderPlot(t *testing.T) {
	svg := renderPlot("t & <x>", 100, []plotSeries{{Label: "a", Color: "#000", X: []float64{1000, 2000}, Y: []float64{1, 50}}})
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "t &amp; &lt;x&gt;") || !strings.Contains(svg, "<polyline") {
		t.Errorf("unexpected svg: %.200s", svg)
	}
}

func TestRecoveryReply(t *testing.T) {
	w := &client{cfg: clientConfig{Kind: kindSwitchboard, Recover: true}, sem: make(chan struct{}, 1), setupDone: make(chan struct{}, 1), failures: map[string]int{}}
	p := &poller{w: w}
	c := &conn{w: w, p: p, state: stSubscribing, setup: true, hasOffset: true, lastOffset: 13, epoch: "E", sentSince: true}
	d := string(payload(1, 1, 0))
	reply := `{"id":2,"result":{"channel":"rc","offset":16,"epoch":"E","recovered":true,"publications":[` +
		`{"channel":"rc","data":` + d + `,"offset":14},{"channel":"rc","data":` + d + `,"offset":15},` +
		`{"channel":"rc","data":` + d + `,"offset":16}]}}`
	p.process(c, serverFrame(reply), time.Now().UnixNano())
	if p.st.Recovered != 3 || p.st.Recoveries != 1 || p.st.ResubGapped != 0 || c.lastOffset != 16 {
		t.Errorf("recovered %d, recoveries %d, gap %d, last %d; want 3, 1, 0, 16", p.st.Recovered, p.st.Recoveries, p.st.ResubGapped, c.lastOffset)
	}
	// Not recoverable: the gap counts as lost.
	c.state, c.sentSince = stSubscribing, true
	p.process(c, serverFrame(`{"id":2,"result":{"channel":"rc","offset":30,"epoch":"E","recovered":false}}`), time.Now().UnixNano())
	if p.st.Unrecovered != 1 || p.st.ResubGapped != 14 {
		t.Errorf("unrecovered %d, gap %d; want 1, 14", p.st.Unrecovered, p.st.ResubGapped)
	}
}

func TestSSEStreamChunked(t *testing.T) {
	w := &client{cfg: clientConfig{Kind: kindSwitchboard, SSE: true}, sem: make(chan struct{}, 1), setupDone: make(chan struct{}, 1), failures: map[string]int{}}
	p := &poller{w: w}
	c := &conn{w: w, p: p, state: stHandshake}
	now := time.Now().UnixNano()
	body := "retry: 1500\n\n" +
		"event: connected\nid: AAA\ndata: {\"client\":\"x\",\"channels\":[{\"channel\":\"bcast\",\"offset\":3,\"epoch\":\"E\"}]}\n\n" +
		"id: AAB\ndata: {\"channel\":\"bcast\",\"data\":" + string(payload(now-int64(time.Millisecond), 1, 10)) + ",\"offset\":4}\n\n" +
		": ping\n\n" +
		"id: AAC\ndata: {\"channel\":\"bcast\",\"data\":" + string(payload(now, 2, 10)) + ",\"offset\":6}\n\n"
	// Two chunks, split in the middle of an event.
	half := len(body) / 2
	stream := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(half), 16) + "\r\n" + body[:half] + "\r\n" +
		strconv.FormatInt(int64(len(body)-half), 16) + "\r\n" + body[half:] + "\r\n"
	// Feed it a few bytes at a time, as the socket might.
	var pending []byte
	for i := 0; i < len(stream); i += 7 {
		pending = append(pending, stream[i:min(i+7, len(stream))]...)
		used := p.process(c, pending, now)
		pending = pending[used:]
	}
	if c.state != stOpen || !c.hasOffset {
		t.Fatalf("state %d: the connected event was not seen", c.state)
	}
	if p.st.Received != 2 || p.st.Gaps != 1 {
		t.Errorf("received %d, gaps %d; want 2 and 1 (offset 5)", p.st.Received, p.st.Gaps)
	}
}
