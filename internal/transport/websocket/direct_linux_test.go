package websocket

import (
	"net"
	"testing"
)

// TestRawIOAllocatesNothing: the event loop's non-blocking write and read
// run through pooled callbacks, not a closure per call, so a delivery to
// an idle subscriber and the read of its answer allocate nothing.
func TestRawIOAllocatesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	wrc, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rrc, err := client.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	reader := &conn{}
	reader.ep.rc = rrc
	msg := make([]byte, 110)
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := writeNow(wrc, msg); err != nil || n != len(msg) {
			t.Fatalf("writeNow: %d, %v", n, err)
		}
		got := 0
		for got < len(msg) {
			n, err := reader.rawRead(buf)
			switch {
			case err == errWouldBlock:
				continue // loopback delivery is not instant
			case err != nil || n == 0:
				t.Fatalf("rawRead: %d, %v", n, err)
			}
			got += n
		}
	})
	if allocs != 0 && !raceEnabled {
		t.Fatalf("%v allocations per write and read, want 0", allocs)
	}
	// Nothing waiting: a read says so without blocking.
	if _, err := reader.rawRead(buf); err != errWouldBlock {
		t.Fatalf("rawRead of an empty socket: %v, want errWouldBlock", err)
	}
}
