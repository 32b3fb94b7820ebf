package websocket

import (
	"fmt"
	"io"
	"net"
	"testing"
)

// BenchmarkLoopbackWrite measures what one small write to a loopback TCP
// socket costs on this machine, without any of Switchboard's code: the
// floor under every delivery that cannot share a write with another (one
// publication to N subscribers needs at least N such writes). The writes go
// round-robin over the connections, whose peers are drained by one
// goroutine each, as clients would.
func BenchmarkLoopbackWrite(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			conns := make([]net.Conn, 0, n)
			for range n {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				go func() { _, _ = io.Copy(io.Discard, c) }()
				defer c.Close()
				defer s.Close()
				conns = append(conns, s)
			}
			msg := make([]byte, 110) // a ~100-byte publication in its frame
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := conns[i%n].Write(msg); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
