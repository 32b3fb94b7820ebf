package websocket

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// BenchmarkProtocolDelivery measures what one delivery of a feed publication
// costs the server's writer, by protocol, with and without
// permessage-deflate: the frame written to each subscriber (B/delivery)
// and the CPU to make it (ns/delivery), the encoding and compression of
// the publication, done once and shared, amortised over the subscribers.
// Two payloads: the feed of feedMessage (compress_test.go), JSON, and 256
// random bytes, which JSON subscribers get in base64. Run:
//
//	go test -run '^$' -bench ProtocolDelivery -benchmem ./internal/transport/websocket/
func BenchmarkProtocolDelivery(b *testing.B) {
	feed := make([][]byte, 256)
	bin := make([][]byte, 256)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range feed {
		feed[i] = feedMessage(i)
		raw := make([]byte, 256) // a binary payload: a sensor frame, a game state delta
		for j := range raw {
			raw[j] = byte(r.IntN(256))
		}
		bin[i] = protocol.AppendPublication(nil, "markets", protocol.BinaryData(raw), uint64(i+1))
	}
	for _, data := range []struct {
		name string
		msgs [][]byte
	}{{"feed", feed}, {"bytes256", bin}} {
		for _, subs := range []int{1, 100} {
			for _, tc := range []struct {
				name            string
				binary, deflate bool
			}{
				{"json", false, false},
				{"protobuf", true, false},
				{"json+deflate", false, true},
				{"protobuf+deflate", true, true},
			} {
				b.Run(fmt.Sprintf("%s/%s/subscribers=%d", data.name, tc.name, subs), func(b *testing.B) {
					hd := &Handler{opts: Options{CompressionMinSize: 256, CompressionLevel: 1}}
					hd.pbc.init(encodeBinary)
					if tc.deflate {
						hd.zc = newDeflateCache(1)
					}
					c := &conn{hd: hd, binary: tc.binary, deflate: tc.deflate}
					buf := make([]byte, 0, 4096)
					var frames, bytes int
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						// The hub builds each publication's JSON once, in a new slice.
						msg := append([]byte(nil), data.msgs[i%len(data.msgs)]...)
						for range subs {
							buf, _, _ = c.appendFrame(buf[:0], hub.Message{Data: msg, At: 1})
							frames++
							bytes += len(buf)
						}
					}
					b.ReportMetric(float64(bytes)/float64(frames), "B/delivery")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(frames), "ns/delivery")
				})
			}
		}
	}
}
