package fossil

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// feed is a realistic publication: a JSON object of about 1 KB.
func feed(seq, price int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"seq":%d,"symbol":"ACME","price":%d.25,"volume":%d,"ts":"2026-12-05T03:%02d:00Z","book":[`, seq, price, seq*37, seq%60)
	for i := range 20 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"level":%d,"bid":%d.5,"ask":%d.75,"size":%d}`, i, price-i, price+i, (i+1)*100)
	}
	b.WriteString(`],"note":"señal — 価格 ✓"}`)
	return []byte(b.String())
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300)
	moved := append(append([]byte{}, big[1000:]...), big[:1000]...)
	cases := map[string]struct{ src, target string }{
		"both empty":          {"", ""},
		"empty source":        {"", "hello, world"},
		"empty target":        {"hello, world", ""},
		"equal":               {string(feed(1, 100)), string(feed(1, 100))},
		"a few fields change": {string(feed(1, 100)), string(feed(2, 101))},
		"unrelated":           {string(feed(1, 100)), strings.Repeat("xyz", 400)},
		"short":               {"abc", "abd"},
		"repeated blocks":     {string(big), string(big) + "tail"},
		"rotated":             {string(big), string(moved)},
		"multibyte shifted":   {strings.Repeat("価格✓é", 40), "x" + strings.Repeat("価格✓é", 40)},
		"tail of 1-3 bytes":   {"0123456789abcdefXYZ", "0123456789abcdefXY"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := Create([]byte(c.src), []byte(c.target))
			got, err := Apply([]byte(c.src), d)
			if err != nil {
				t.Fatalf("Apply: %v (delta %q)", err, d)
			}
			if !bytes.Equal(got, []byte(c.target)) {
				t.Fatalf("Apply made %q, want %q", got, c.target)
			}
			if utf8.ValidString(c.target) && !utf8.Valid(d) {
				t.Fatalf("delta of a UTF-8 target is not UTF-8: %q", d)
			}
			if n, err := TargetSize(d); err != nil || n != len(c.target) {
				t.Fatalf("TargetSize = %d, %v; want %d", n, err, len(c.target))
			}
		})
	}
}

// TestSmallDelta: a feed update that changes a few fields makes a delta a
// fraction of the publication's size.
func TestSmallDelta(t *testing.T) {
	a, b := feed(7, 100), feed(8, 100)
	d := Create(a, b)
	if len(d)*5 > len(b) {
		t.Fatalf("delta of %d bytes for a %d-byte update: %q", len(d), len(b), d)
	}
}

// TestFormat pins the wire format with hand-checked deltas.
func TestFormat(t *testing.T) {
	src := []byte("The quick brown fox jumps over the lazy dog")
	target := []byte("The quick brown fox jumps over the lazy cat!")
	cases := map[string]struct {
		delta string
		want  string
		err   bool
	}{
		// 44 = "h"; copy 40 bytes from 0 ("d@0,"), insert "cat!"; checksum.
		"copy and insert": {delta: "h\nd@0,4:cat!" + string(appendInt(nil, int(checksum(target)))) + ";", want: string(target)},
		"insert only":     {delta: "3\n3:abc" + string(appendInt(nil, int(checksum([]byte("abc"))))) + ";", want: "abc"},
		"empty":           {delta: "0\n0;", want: ""},
		"bad checksum":    {delta: "3\n3:abc1;", err: true},
		"short target":    {delta: "4\n3:abc" + string(appendInt(nil, int(checksum([]byte("abc"))))) + ";", err: true},
		"copy past end":   {delta: "3\n3@h,0;", err: true},
		"insert past end": {delta: "3\n9:abc0;", err: true},
		"over the header": {delta: "2\n3:abc0;", err: true},
		"no header":       {delta: "3:abc0;", err: true},
		"no end":          {delta: "3\n3:abc", err: true},
		"unknown command": {delta: "3\n3!abc0;", err: true},
		"trailing bytes":  {delta: "0\n0;x", err: true},
		"huge integer":    {delta: "~~~~~~~~~~~~\n0;", err: true},
		"copy no comma":   {delta: "3\n3@0;", err: true},
		"empty delta":     {delta: "", err: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := Apply(src, []byte(c.delta))
			if c.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Apply = %q, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil || string(got) != c.want {
				t.Fatalf("Apply = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestChecksum(t *testing.T) {
	cases := map[string]uint32{
		"":                                 0,
		"a":                                0x61000000,
		"abcd":                             0x61626364,
		"abcde":                            0x61626364 + 0x65000000,
		"\xff\xff\xff\xff\x00\x00\x00\x02": 1, // wraps modulo 2^32
	}
	for in, want := range cases {
		if got := checksum([]byte(in)); got != want {
			t.Errorf("checksum(%q) = %#x, want %#x", in, got, want)
		}
	}
}

func TestAppendInt(t *testing.T) {
	cases := map[int]string{0: "0", 9: "9", 10: "A", 36: "_", 37: "a", 63: "~", 64: "10", 4095: "~~", 1<<32 - 1: "3~~~~~"}
	for n, want := range cases {
		if got := string(appendInt(nil, n)); got != want {
			t.Errorf("appendInt(%d) = %q, want %q", n, got, want)
		}
		r := reader{b: []byte(want)}
		if got, ok := r.int(); !ok || got != uint64(n) {
			t.Errorf("reading %q = %d, %v; want %d", want, got, ok, n)
		}
	}
}

// FuzzRoundTrip checks that Apply(src, Create(src, target)) == target for
// any two inputs, that the delta of a UTF-8 target is UTF-8, and that Apply
// never panics on a delta it did not make.
func FuzzRoundTrip(f *testing.F) {
	f.Add(feed(1, 100), feed(2, 101), []byte("0\n0;"))
	f.Add([]byte("abc"), []byte("abcabcabcabcabcabcabcabcabc"), []byte("3\n3@0,2NPfgF;"))
	f.Add(bytes.Repeat([]byte("価格"), 20), bytes.Repeat([]byte("格価"), 20), []byte("1\n1:x"))
	f.Fuzz(func(t *testing.T, src, target, junk []byte) {
		d := Create(src, target)
		got, err := Apply(src, d)
		if err != nil || !bytes.Equal(got, target) {
			t.Fatalf("round trip: %q, %v; want %q (delta %q)", got, err, target, d)
		}
		if utf8.Valid(target) && !utf8.Valid(d) {
			t.Fatalf("delta of a UTF-8 target is not UTF-8: %q", d)
		}
		if out, err := Apply(src, junk); err == nil {
			if n, _ := TargetSize(junk); n != len(out) {
				t.Fatalf("Apply made %d bytes, header says %d", len(out), n)
			}
		}
	})
}

// BenchmarkCreate makes the delta between two consecutive feed updates of
// about 1 KB, and applies it.
func BenchmarkCreate(b *testing.B) {
	src, target := feed(7, 100), feed(8, 101)
	b.SetBytes(int64(len(target)))
	b.Run("create", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Create(src, target)
		}
	})
	d := Create(src, target)
	b.Run("apply", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Apply(src, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(len(d)), "delta-B")
}
