package hub

import (
	"testing"
	"unsafe"
)

// TestStructSizes keeps the per-connection structs in their allocation
// size classes: every idle connection pays for them.
func TestStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, max uintptr
	}{
		{"Session", unsafe.Sizeof(Session{}), 384},
		{"subscription", unsafe.Sizeof(subscription{}), 96},
	} {
		if tc.size > tc.max {
			t.Errorf("%s is %d bytes, over its %d-byte size class", tc.name, tc.size, tc.max)
		}
	}
}
