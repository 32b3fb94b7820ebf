package websocket

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackWrite measures what one small write to a loopback TCP
// socket costs on this machine, without any of Switchboard's code: the
// floor under every delivery that cannot share a write with another (one
// publication to N subscribers needs at least N such writes). The writes go
// round-robin over the connections, whose peers are drained as clients
// would.
//
// reader=goroutine drains the peers with goroutines of this process: on
// one core (taskset) the writer never has to wake a sleeping reader, so
// this is the cost of the write alone. reader=process drains them from a
// child process on the other cores, when there are any, as a real client
// is: each write may wake that process, the cost every server pays per
// delivery to a separate client. conns=10000 is the 10,000-subscriber
// broadcast's floor: the sockets no longer fit the caches.
func BenchmarkLoopbackWrite(b *testing.B) {
	for _, reader := range []string{"goroutine", "process"} {
		for _, n := range []int{1, 100, 1000, 10000} {
			if n > 1000 && reader == "goroutine" {
				continue // both ends in one process: over the open-file limit
			}
			b.Run(fmt.Sprintf("reader=%s/conns=%d", reader, n), func(b *testing.B) {
				benchLoopbackWrite(b, n, reader == "process")
			})
		}
	}
}

func benchLoopbackWrite(b *testing.B, n int, child bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	if child {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFloorReader$")
		cmd.Env = append(os.Environ(), "FLOOR_READER_ADDR="+ln.Addr().String(), "FLOOR_READER_CONNS="+strconv.Itoa(n))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cmd.Wait() }()
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		if !child {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
			defer c.Close()
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
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
}

// TestFloorReader is BenchmarkLoopbackWrite's child process: it dials the
// connections it is told to and drains them until they close, on the CPUs
// its parent does not use when there are such. Without its environment it
// does nothing.
func TestFloorReader(t *testing.T) {
	addr := os.Getenv("FLOOR_READER_ADDR")
	if addr == "" {
		t.Skip("the child process of BenchmarkLoopbackWrite")
	}
	n, _ := strconv.Atoi(os.Getenv("FLOOR_READER_CONNS"))
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		var other unix.CPUSet
		for cpu := range runtime.NumCPU() * 4 {
			if !set.IsSet(cpu) {
				other.Set(cpu)
			}
		}
		if other.Count() > 0 {
			_ = unix.SchedSetaffinity(0, &other)
			runtime.GOMAXPROCS(other.Count())
		}
	}
	done := make(chan struct{}, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, bufio.NewReader(c))
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
}
