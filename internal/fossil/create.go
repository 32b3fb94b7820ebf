package fossil

// block is the length of the source blocks Create indexes and of the
// window it slides over the target: a match shorter than this is not
// found, and none shorter would pay for its copy command anyway.
const block = 16

// maxCandidates bounds how many source blocks with the window's hash
// Create compares, so that a source of many equal blocks costs linear time.
const maxCandidates = 32

// Create returns a delta that makes target from src (see Apply). It finds
// runs of the target that occur in the source by indexing the source's
// aligned blocks with a rolling hash, and inserts the rest. The delta of a
// valid UTF-8 target is valid UTF-8: copies begin and end on character
// boundaries of the target.
func Create(src, target []byte) []byte {
	out := make([]byte, 0, len(target)/4+32)
	out = appendInt(out, len(target))
	out = append(out, '\n')
	lit := 0 // start of the target bytes not yet in the delta
	if len(src) >= block && len(target) >= block {
		idx := newIndex(src)
		var h rolling
		h.init(target[:block])
		for i := 0; ; {
			start, off, n := idx.match(src, target, i, lit, h.sum())
			if n > 0 {
				out = appendInsert(out, target[lit:start])
				out = appendInt(out, n)
				out = append(out, '@')
				out = appendInt(out, off)
				out = append(out, ',')
				i = start + n
				lit = i
				if i+block > len(target) {
					break
				}
				h.init(target[i : i+block])
				continue
			}
			if i+block >= len(target) {
				break
			}
			h.roll(target[i], target[i+block])
			i++
		}
	}
	out = appendInsert(out, target[lit:])
	out = appendInt(out, int(checksum(target)))
	return append(out, ';')
}

// appendInsert appends an insert command for lit, if it is not empty.
func appendInsert(dst, lit []byte) []byte {
	if len(lit) == 0 {
		return dst
	}
	dst = appendInt(dst, len(lit))
	dst = append(dst, ':')
	return append(dst, lit...)
}

// rolling is a hash of a block-long window that slides by one byte in
// constant time (two running sums, as in Adler-32).
type rolling struct {
	a, b uint32
}

func (h *rolling) init(w []byte) {
	h.a, h.b = 0, 0
	for i, c := range w {
		h.a += uint32(c)
		h.b += uint32(block-i) * uint32(c)
	}
}

// roll drops out from the window and takes in.
func (h *rolling) roll(out, in byte) {
	h.a += uint32(in) - uint32(out)
	h.b += h.a - block*uint32(out)
}

func (h *rolling) sum() uint32 { return h.a&0xffff | h.b<<16 }

// index maps the hash of each aligned source block to the blocks that
// have it: head holds the last block of each bucket plus one (0 for none),
// chain the block before it in the same bucket.
type index struct {
	head  []int32
	chain []int32
	mask  uint32
}

func newIndex(src []byte) *index {
	n := len(src) / block
	size := 1
	for size < 2*n {
		size <<= 1
	}
	x := &index{head: make([]int32, size), chain: make([]int32, n), mask: uint32(size - 1)}
	var h rolling
	for i := range n {
		h.init(src[i*block : (i+1)*block])
		b := h.sum() & x.mask
		x.chain[i] = x.head[b]
		x.head[b] = int32(i + 1)
	}
	return x
}

// match looks for the longest run of the target around the window at i
// that is also in the source, extending backwards no further than lit. It
// returns where the run starts in the target, where in the source, and its
// length, trimmed to the target's character boundaries; n is 0 when no run
// is long enough to be worth a copy.
func (x *index) match(src, target []byte, i, lit int, hash uint32) (start, off, n int) {
	tries := 0
	for c := x.head[hash&x.mask]; c != 0 && tries < maxCandidates; c = x.chain[c-1] {
		tries++
		s := int(c-1) * block
		fwd := 0
		for i+fwd < len(target) && s+fwd < len(src) && target[i+fwd] == src[s+fwd] {
			fwd++
		}
		if fwd < block {
			continue // a hash collision, or too short to count
		}
		back := 0
		for i-back > lit && s-back > 0 && target[i-back-1] == src[s-back-1] {
			back++
		}
		if back+fwd > n {
			start, off, n = i-back, s-back, back+fwd
		}
	}
	if n == 0 {
		return 0, 0, 0
	}
	// A copy must not split a character: move its ends off continuation
	// bytes, so that the inserts around it hold whole characters.
	for n > 0 && isContinuation(target[start]) {
		start, off, n = start+1, off+1, n-1
	}
	for n > 0 && start+n < len(target) && isContinuation(target[start+n]) {
		n--
	}
	// A copy command costs up to 14 bytes; shorter runs are inserted.
	if n < block {
		return 0, 0, 0
	}
	return start, off, n
}

func isContinuation(c byte) bool { return c&0xc0 == 0x80 }
