package whip

import (
	"bytes"
	"errors"
	"testing"
)

func TestSplitAnnexB(t *testing.T) {
	cases := map[string]struct {
		in   []byte
		want [][]byte
	}{
		"four-byte codes":  {[]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65, 2}, [][]byte{{0x67, 1}, {0x65, 2}}},
		"three-byte codes": {[]byte{0, 0, 1, 0x67, 1, 0, 0, 1, 0x65, 2}, [][]byte{{0x67, 1}, {0x65, 2}}},
		"no start code":    {[]byte{0x65, 1, 2}, [][]byte{{0x65, 1, 2}}},
		"empty units":      {[]byte{0, 0, 1, 0, 0, 1, 0x65}, [][]byte{{0x65}}},
		"empty":            {nil, nil},
		"trailing code":    {[]byte{0x65, 0, 0, 1}, [][]byte{{0x65}}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := splitAnnexB(c.in)
			if len(got) != len(c.want) {
				t.Fatalf("got %x, want %x", got, c.want)
			}
			for i := range got {
				if !bytes.Equal(got[i], c.want[i]) {
					t.Fatalf("got %x, want %x", got, c.want)
				}
			}
		})
	}
}

func TestKeyframes(t *testing.T) {
	cases := []struct {
		name string
		got  bool
		want bool
	}{
		{"h264 idr", h264Key([][]byte{{0x67}, {0x68}, {0x65}}), true},
		{"h264 non-idr", h264Key([][]byte{{0x41}}), false},
		{"vp8 key", vp8Key([]byte{0x10, 2, 0}), true},
		{"vp8 inter", vp8Key([]byte{0x11, 2, 0}), false},
		// frame_marker 10, profile 0, show_existing 0, frame_type 0.
		{"vp9 key", vp9Key([]byte{0x80}), true},
		{"vp9 inter", vp9Key([]byte{0x84}), false},
		{"vp9 show existing", vp9Key([]byte{0x88}), false},
		// profile 3: a reserved bit before show_existing_frame.
		{"vp9 profile 3 key", vp9Key([]byte{0xb0}), true},
		{"vp9 profile 3 inter", vp9Key([]byte{0xb2}), false},
		{"vp9 bad marker", vp9Key([]byte{0x00}), false},
		{"vp9 empty", vp9Key(nil), false},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %v", c.name, c.got)
		}
	}
}

func TestUnwrap(t *testing.T) {
	var u unwrapper
	for i, c := range []struct {
		ts   uint32
		want int64
	}{{0xfffffff0, 0}, {0xfffffff8, 8}, {0x00000008, 24}, {0x00000004, 20}} {
		if got := u.unwrap(c.ts); got != c.want {
			t.Fatalf("step %d: got %d, want %d", i, got, c.want)
		}
	}
}

const chromeOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 102 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\na=rtpmap:102 H264/90000\r\na=rtpmap:96 VP8/90000\r\n"

func TestParseOffer(t *testing.T) {
	o, err := parseOffer([]byte(chromeOffer))
	if err != nil {
		t.Fatal(err)
	}
	s, err := o.sending()
	if err != nil || len(s) != 2 || s[1].kind != "video" || !s[1].has("h264") || !s[1].has("vp8") || s[0].mid != "0" {
		t.Fatalf("sending %+v %v", s, err)
	}
	if len(o.receiving()) != 0 {
		t.Fatal("a sendonly offer receives")
	}
	bad := map[string]struct {
		body string
		want error
	}{
		"empty":        {"", ErrBadOffer},
		"garbage":      {"hello", ErrBadOffer},
		"bad rtpmap":   {"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n", ErrBadOffer},
		"two videos":   {chromeOffer + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n", ErrBadOffer},
		"no media":     {"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", ErrNoMedia},
		"recvonly":     {"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n", ErrNoMedia},
		"port 0 media": {"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n", ErrNoMedia},
	}
	for name, c := range bad {
		t.Run(name, func(t *testing.T) {
			o, err := parseOffer([]byte(c.body))
			if err == nil {
				_, err = o.sending()
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// FuzzParseOffer: any body is an offer or a clean error, never a panic.
func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(chromeOffer))
	f.Add([]byte("v=0\r\nm=video 9 X 96\r\na=rtpmap:96 \r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := parseOffer(body)
		if err != nil {
			if !errors.Is(err, ErrBadOffer) {
				t.Fatalf("error %v does not wrap ErrBadOffer", err)
			}
			return
		}
		if _, err := o.sending(); err != nil && !errors.Is(err, ErrBadOffer) && !errors.Is(err, ErrNoMedia) {
			t.Fatalf("sending: %v", err)
		}
		_ = o.receiving()
	})
}

// FuzzSplitAnnexB: the units hold every byte that is not a start code,
// none empty, and the keyframe checks never panic.
func FuzzSplitAnnexB(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x65})
	f.Add([]byte{0, 0, 1})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		units := splitAnnexB(b)
		n := 0
		for _, u := range units {
			if len(u) == 0 {
				t.Fatal("empty unit")
			}
			n += len(u)
		}
		if n > len(b) {
			t.Fatalf("%d bytes of units from %d", n, len(b))
		}
		_ = h264Key(units)
		_ = vp8Key(b)
		_ = vp9Key(b)
	})
}
