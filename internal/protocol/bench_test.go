package protocol_test

import (
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

func BenchmarkDecodeCommand(b *testing.B) {
	for _, bc := range []struct{ name, frame string }{
		{"subscribe", `{"command":"subscribe","channel":"news","id":1}`},
		{"publish-100B", `{"command":"publish","channel":"news","id":2,"data":{"text":"` + string(make([]byte, 0)) + `0123456789012345678901234567890123456789012345678901234567890123456789","ts":1795949880638}}`},
	} {
		frame := []byte(bc.frame)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := protocol.DecodeCommand(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendPublication(b *testing.B) {
	data := []byte(`{"text":"0123456789012345678901234567890123456789012345678901234567890123456789","ts":1795949880638}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = protocol.AppendPublication(buf[:0], "news", data, 123456)
	}
}

func BenchmarkCursor(b *testing.B) {
	chans := []string{"a", "b", "c", "d"}
	check := protocol.CursorCheck(chans, []string{"E1", "E2", "E3", "E4"})
	offs := []uint64{1, 20, 300, 4000}
	b.ReportAllocs()
	for b.Loop() {
		s := protocol.EncodeCursor(check, offs)
		if _, _, err := protocol.DecodeCursor(s, 4); err != nil {
			b.Fatal(err)
		}
	}
}
