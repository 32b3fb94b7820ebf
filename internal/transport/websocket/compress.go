package websocket

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"slices"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// permessage-deflate (RFC 7692), when Options.Compression is on.
//
// The server accepts the first offer it can honour and always answers with
// server_no_context_takeover and client_no_context_takeover: every message
// in either direction is compressed on its own. That costs some ratio on a
// stream of similar messages, and buys two things. A publication is
// compressed once, and the same compressed bytes go to every subscriber
// that negotiated the extension (deflateCache). And a connection keeps no
// compression state between messages: no 32 KiB window or inflater per
// idle connection. Offers the server cannot honour are declined (a
// server_max_window_bits below 15, since Go's flate always uses a 32 KiB
// window), and the connection goes on uncompressed.
//
// Reading: a compressed client message (RSV1 on its first frame) is
// inflated once complete. Its compressed size is bound by max_message_size
// like any message, and so is its inflated size: a message that inflates
// beyond it (a decompression bomb) closes the connection with 1009, as soon
// as the limit is passed, without inflating the rest. Data that is not
// valid deflate closes with 1007.

// deflateParams is what the server accepts and answers.
var deflateParams = wsflate.Parameters{
	ServerNoContextTakeover: true,
	ClientNoContextTakeover: true,
}

// negotiator negotiates permessage-deflate for one upgrade.
type negotiator struct {
	ext wsflate.Extension
}

// negotiate is the upgrader's Negotiate callback. A malformed offer is
// declined rather than failing the handshake: the client is served
// uncompressed.
func (n *negotiator) negotiate(opt httphead.Option) (httphead.Option, error) {
	accept, err := n.ext.Negotiate(opt)
	if err != nil {
		return httphead.Option{}, nil
	}
	return accept, nil
}

// accepted reports whether the client's offer was accepted.
func (n *negotiator) accepted() bool {
	_, ok := n.ext.Accepted()
	return ok
}

func newNegotiator() *negotiator {
	return &negotiator{ext: wsflate.Extension{Parameters: deflateParams}}
}

// deflateTail is the end of a sync flush, which RFC 7692 section 7.2.1 has
// the sender remove and the receiver append.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// flateWriters pools compressors per level (index level-1).
var flateWriters [flate.BestCompression]sync.Pool

// deflate appends the compressed form of src to dst as permessage-deflate
// sends it: one sync-flushed deflate stream without its tail.
func deflate(dst, src []byte, level int) []byte {
	buf := bytes.NewBuffer(dst)
	fw, _ := flateWriters[level-1].Get().(*flate.Writer)
	if fw == nil {
		fw, _ = flate.NewWriter(buf, level) // level is checked by setDefaults
	} else {
		fw.Reset(buf)
	}
	_, _ = fw.Write(src) // a bytes.Buffer does not fail
	_ = fw.Flush()
	flateWriters[level-1].Put(fw)
	out := buf.Bytes()
	return out[:len(out)-len(deflateTail)]
}

// flateReaders pools decompressors.
var flateReaders sync.Pool

// errInflatedTooBig: a compressed message inflates beyond the limit.
var errInflatedTooBig = errors.New("websocket: inflated message too big")

// inflate decompresses a permessage-deflate message payload into a new
// slice of at most limit bytes. It fails with errInflatedTooBig as soon as
// the output passes limit, and with the decompressor's error on data that
// is not valid deflate.
func inflate(payload []byte, limit int) ([]byte, error) {
	src := io.MultiReader(bytes.NewReader(payload), bytes.NewReader(deflateTail))
	fr, _ := flateReaders.Get().(io.ReadCloser)
	if fr == nil {
		fr = flate.NewReader(src)
	} else if err := fr.(flate.Resetter).Reset(src, nil); err != nil {
		return nil, err
	}
	defer flateReaders.Put(fr)
	out := make([]byte, 0, min(limit+1, max(512, 4*len(payload))))
	for {
		if len(out) == cap(out) { // and len(out) <= limit: double, up to limit+1
			out = slices.Grow(out, min(cap(out), limit+1-len(out)))
		}
		n, err := fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return nil, errInflatedTooBig
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// A sync-flushed stream has no final block: the input ends
			// inside it, which is the end of the message.
			return out, nil
		default:
			return nil, err
		}
	}
}

// inflateMessage inflates a compressed client message, returning the
// disconnect its failure calls for.
func inflateMessage(payload []byte, limit int) ([]byte, *protocol.Disconnect) {
	out, err := inflate(payload, limit)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, errInflatedTooBig):
		return nil, &protocol.DisconnectMessageTooBig
	default:
		return nil, &protocol.DisconnectInvalidPayload
	}
}

// deflateCache holds the compressed form of recent publications, so that
// each is compressed once however many subscribers it goes to (see
// sharedCache, which it uses).
type deflateCache struct {
	level int
	cache sharedCache

	sent, received, saved prometheus.Counter // nil without metrics
}

// count records n messages sent compressed, saving saved bytes.
func (c *deflateCache) count(n, saved int) {
	if c.sent != nil {
		c.sent.Add(float64(n))
		c.saved.Add(float64(saved))
	}
}

func newDeflateCache(level int) *deflateCache {
	c := &deflateCache{level: level}
	c.cache.init(func(data []byte) []byte { return compressed(data, level) })
	return c
}

// get returns the compressed form of data, or nil when compressing does
// not make it smaller.
func (c *deflateCache) get(data []byte) []byte { return c.cache.get(data) }

// compressed returns data compressed, or nil when that is no smaller.
func compressed(data []byte, level int) []byte {
	z := deflate(make([]byte, 0, len(data)/2+16), data, level)
	if len(z) >= len(data) {
		return nil
	}
	return z
}
