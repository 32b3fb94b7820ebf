package websocket

import (
	"sync"
	"unsafe"
)

// sharedCache holds what a transform (compression, the binary protocol's
// encoding) made of recent publications, so that each is transformed once
// however many subscribers it goes to. A message is recognised by the
// address and length of its Data, which the hub shares between sessions
// and never modifies; an entry holds that slice, so the address cannot be
// reused while the entry lives. The cache keeps the last cacheShardSize
// publications of each of cacheShards shards; a subscriber so far behind
// that its publication was evicted transforms it again, which costs time,
// not correctness.
type sharedCache struct {
	transform func([]byte) []byte
	shards    [cacheShards]cacheShard
}

const (
	cacheShards    = 16
	cacheShardSize = 64
)

type cacheShard struct {
	mu   sync.Mutex
	m    map[*byte]*cacheEntry
	ring [cacheShardSize]*byte
	next int
}

type cacheEntry struct {
	src  []byte
	once sync.Once
	out  []byte
}

// init sets the cache up to hold what transform makes of each message.
func (c *sharedCache) init(transform func([]byte) []byte) {
	c.transform = transform
	for i := range c.shards {
		c.shards[i].m = make(map[*byte]*cacheEntry, cacheShardSize)
	}
}

// get returns what the transform makes of data, transforming it on the
// first request only.
func (c *sharedCache) get(data []byte) []byte {
	p := unsafe.SliceData(data)
	sh := &c.shards[(uintptr(unsafe.Pointer(p))>>4)%cacheShards]
	sh.mu.Lock()
	e := sh.m[p]
	if e == nil || len(e.src) != len(data) {
		e = &cacheEntry{src: data}
		if old := sh.ring[sh.next]; old != nil {
			delete(sh.m, old)
		}
		sh.ring[sh.next] = p
		sh.next = (sh.next + 1) % cacheShardSize
		sh.m[p] = e
	}
	sh.mu.Unlock()
	e.once.Do(func() { e.out = c.transform(data) })
	return e.out
}
