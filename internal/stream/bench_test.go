package stream_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// BenchmarkWriteUnit measures a publisher's write with readers draining
// their queues, by number of readers.
func BenchmarkWriteUnit(b *testing.B) {
	for _, readers := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			reg := stream.NewRegistry(stream.Options{Logger: quiet})
			p, err := reg.Publish("live/bench", stream.PublisherInfo{}, avTracks())
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			for i := 0; i < readers; i++ {
				rd, _ := p.Stream().AddReader("bench")
				go func() {
					for {
						if _, _, err := rd.Next(context.Background()); err != nil {
							done <- struct{}{}
							return
						}
					}
				}()
			}
			_ = p.WriteUnit(video(0, true)) // the readers start at a keyframe
			u := audio(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = p.WriteUnit(u)
			}
			b.StopTimer()
			p.Close()
			for i := 0; i < readers; i++ {
				<-done
			}
		})
	}
}
