package sfu

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboardhq/switchboard/internal/webrtc/payload"
)

// upTrack is one track a participant publishes: one layer, or up to three
// simulcast layers (one SSRC each) of the same source.
type upTrack struct {
	pub      *Participant
	pc       *webrtc.PeerConnection
	id       string // the SFU's id: participant id and the client's track id
	remoteID string
	streamID string
	kind     webrtc.RTPCodecType
	codec    webrtc.RTPCodecParameters
	muted    atomic.Bool

	mu     sync.Mutex
	layers [3]*layer // by quality; a track without simulcast uses [0]
	meta   TrackMeta // from room_publish
	ended  bool

	downs   atomic.Pointer[[]*downTrack] // copy on write, read per packet
	downsMu sync.Mutex                   // serialises writers of downs

	readers sync.WaitGroup
	reading atomic.Int32 // layers whose reader still runs
}

// layer is one simulcast layer (or the only stream) of a track.
type layer struct {
	quality int
	rid     string
	ssrc    uint32
	remote  *webrtc.TrackRemote
	levelID uint8 // the audio level extension's id, 0 when not negotiated

	bytes    atomic.Uint64
	packets  atomic.Uint64
	bitrate  atomic.Int64 // bit/s, smoothed over about rateWindow
	lastPLI  atomic.Int64 // unix nanoseconds
	lastSeen atomic.Int64 // unix nanoseconds of the last packet
	width    atomic.Int32 // from the last VP8 keyframe
	height   atomic.Int32

	levelSum atomic.Int64 // audio levels summed since takeLevel
	levelN   atomic.Int64

	measuredBytes uint64 // owned by the room loop
	measuredAt    time.Time
	rated         bool // bitrate holds a measure
}

func newUpTrack(p *Participant, pc *webrtc.PeerConnection, remote *webrtc.TrackRemote) *upTrack {
	t := &upTrack{
		pub: p, pc: pc, id: p.id + ":" + remote.ID(), remoteID: remote.ID(), streamID: remote.StreamID(),
		kind: remote.Kind(), codec: remote.Codec(),
	}
	t.downs.Store(&[]*downTrack{})
	return t
}

// sfu returns the SFU of the track (nil for the bare tracks of unit
// tests).
func (t *upTrack) sfu() *SFU {
	if t.pub == nil || t.pub.room == nil {
		return nil
	}
	return t.pub.room.sfu
}

// quality maps a simulcast rid to a layer: Chromium's usual names q/h/f,
// and l/m/h and 0/1/2.
func quality(rid string) int {
	switch rid {
	case "", "q", "l", "low", "0":
		return 0
	case "h", "m", "mid", "1":
		return 1
	default:
		return 2
	}
}

func (t *upTrack) addLayer(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) *layer {
	l := &layer{quality: quality(remote.RID()), rid: remote.RID(), ssrc: uint32(remote.SSRC()), remote: remote}
	for _, ext := range recv.GetParameters().HeaderExtensions {
		if ext.URI == audioLevelURI {
			l.levelID = uint8(ext.ID)
		}
	}
	t.mu.Lock()
	t.layers[l.quality] = l
	t.mu.Unlock()
	t.readers.Add(1)
	t.reading.Add(1)
	return l
}

// layer returns the layer of quality q, or nil.
func (t *upTrack) layer(q int) *layer {
	if q < 0 || q > 2 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.layers[q]
}

// simulcast reports whether the track has more than one layer.
func (t *upTrack) simulcast() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.layers[1] != nil || t.layers[2] != nil || (t.layers[0] != nil && t.layers[0].rid != "")
}

// readLoop reads one layer's packets and hands each to every subscriber.
func (t *upTrack) readLoop(l *layer) {
	defer t.readers.Done()
	defer func() {
		// The last layer ended while the participant stays: the client
		// removed the track (renegotiation), so the others drop it.
		if t.reading.Add(-1) == 0 {
			_ = t.pub.unpublish(t.id)
		}
	}()
	isVP8 := t.codec.MimeType == webrtc.MimeTypeVP8
	for {
		pkt, _, err := l.remote.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		l.bytes.Add(uint64(len(pkt.Payload)))
		l.packets.Add(1)
		l.lastSeen.Store(now.UnixNano())
		if l.levelID != 0 {
			if b := pkt.GetExtension(l.levelID); len(b) > 0 {
				var ext rtp.AudioLevelExtension
				if ext.Unmarshal(b) == nil {
					l.levelSum.Add(int64(ext.Level))
					l.levelN.Add(1)
				}
			}
		}
		f := frame{pkt: pkt, layer: l.quality, at: now}
		if t.kind == webrtc.RTPCodecTypeVideo {
			if isVP8 {
				if d, err := payload.ParseVP8(pkt.Payload); err == nil {
					f.vp8, f.hasVP8, f.keyframe = d, true, d.Keyframe
					if d.Keyframe {
						if w, h, ok := payload.VP8Size(pkt.Payload[d.HeaderSize:]); ok {
							l.width.Store(int32(w))
							l.height.Store(int32(h))
						}
					}
				}
			} else {
				f.keyframe = payload.IsKeyframe(t.codec.MimeType, pkt.Payload)
			}
		} else {
			f.keyframe = true
		}
		if t.muted.Load() {
			continue
		}
		n := 0
		for _, d := range *t.downs.Load() {
			if d.forward(&f) {
				n++
			}
		}
		if n > 0 {
			t.sfu().stats.forwarded.Add(uint64(n))
		}
	}
}

// frame is one received packet with what the forwarders need to know.
type frame struct {
	pkt      *rtp.Packet
	layer    int
	at       time.Time
	keyframe bool
	hasVP8   bool
	vp8      payload.VP8
}

func (t *upTrack) addDown(d *downTrack) {
	t.downsMu.Lock()
	defer t.downsMu.Unlock()
	next := append(slices.Clone(*t.downs.Load()), d)
	t.downs.Store(&next)
}

func (t *upTrack) removeDown(d *downTrack) {
	t.downsMu.Lock()
	defer t.downsMu.Unlock()
	cur := *t.downs.Load()
	if i := slices.Index(cur, d); i >= 0 {
		next := slices.Delete(slices.Clone(cur), i, i+1)
		t.downs.Store(&next)
	}
}

// pliInterval is the least time between two keyframe requests for one
// layer.
const pliInterval = 300 * time.Millisecond

// requestKeyframe asks the publisher for a keyframe on layer q (every
// layer when q < 0), at most once per pliInterval per layer.
func (t *upTrack) requestKeyframe(q int) {
	if t.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	now := time.Now().UnixNano()
	var pkts []rtcp.Packet
	for i := range 3 {
		if q >= 0 && i != q {
			continue
		}
		l := t.layer(i)
		if l == nil {
			continue
		}
		last := l.lastPLI.Load()
		if now-last < int64(pliInterval) || !l.lastPLI.CompareAndSwap(last, now) {
			continue
		}
		pkts = append(pkts, &rtcp.PictureLossIndication{MediaSSRC: l.ssrc})
	}
	if len(pkts) > 0 && t.pc != nil { // unit tests build tracks without a connection
		t.sfu().stats.keyframeRequests.Add(uint64(len(pkts)))
		_ = t.pc.WriteRTCP(pkts)
	}
}

// rateWindow is the time constant of a layer's smoothed bitrate: a
// keyframe (many times a delta frame) or an interval in which a busy
// publisher sent nothing moves it a little, not to a spike or to zero,
// so that the layer choice does not follow them.
const rateWindow = 2 * time.Second

// measure updates each layer's bitrate: the rate since the last measure,
// folded into an exponentially weighted mean with time constant
// rateWindow (the first measure is taken as it is).
func (t *upTrack) measure(now time.Time) {
	for i := range 3 {
		l := t.layer(i)
		if l == nil {
			continue
		}
		b := l.bytes.Load()
		if !l.measuredAt.IsZero() {
			if dt := now.Sub(l.measuredAt).Seconds(); dt > 0 {
				raw := float64(b-l.measuredBytes) * 8 / dt
				if l.rated {
					prev := float64(l.bitrate.Load())
					raw = prev + (1-math.Exp(-dt/rateWindow.Seconds()))*(raw-prev)
				}
				l.bitrate.Store(int64(raw))
				l.rated = true
			}
		}
		l.measuredBytes, l.measuredAt = b, now
	}
}

// active reports whether layer q received packets in the last second.
func (t *upTrack) active(q int) bool {
	l := t.layer(q)
	return l != nil && time.Now().UnixNano()-l.lastSeen.Load() < int64(time.Second)
}

// takeLevel returns the mean audio level (0 loudest, 127 silent) since
// the last call, and whether there was any.
func (t *upTrack) takeLevel() (float64, bool) {
	if t.kind != webrtc.RTPCodecTypeAudio || t.muted.Load() {
		return 0, false
	}
	l := t.layer(0)
	if l == nil {
		return 0, false
	}
	n := l.levelN.Swap(0)
	sum := l.levelSum.Swap(0)
	if n == 0 {
		return 0, false
	}
	return float64(sum) / float64(n), true
}

// end stops the track: its readers return when the receiver stops.
func (t *upTrack) end() {
	t.mu.Lock()
	t.ended = true
	t.mu.Unlock()
}

// wait waits for the readers, after the publishing connection closed.
func (t *upTrack) wait() { t.readers.Wait() }

// TrackInfo describes a published track.
type TrackInfo struct {
	Participant string      `json:"participant"`
	ID          string      `json:"track"`
	Kind        string      `json:"kind"`
	Codec       string      `json:"codec"`
	Stream      string      `json:"stream"`
	Muted       bool        `json:"muted"`
	Simulcast   bool        `json:"simulcast"`
	Source      string      `json:"source,omitempty"`
	Name        string      `json:"name,omitempty"`
	Layers      []LayerInfo `json:"layers"`
}

// LayerInfo describes one layer of a track.
type LayerInfo struct {
	Quality int    `json:"quality"`
	RID     string `json:"rid,omitempty"`
	Bitrate int64  `json:"bitrate"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
}

func (t *upTrack) info() TrackInfo {
	ti := TrackInfo{Participant: t.pub.id, ID: t.id, Kind: t.kind.String(), Codec: t.codec.MimeType, Stream: t.streamID,
		Muted: t.muted.Load(), Simulcast: t.simulcast(), Layers: []LayerInfo{}}
	t.mu.Lock()
	ti.Source, ti.Name = t.meta.Source, t.meta.Name
	t.mu.Unlock()
	for i := range 3 {
		if l := t.layer(i); l != nil {
			ti.Layers = append(ti.Layers, LayerInfo{Quality: i, RID: l.rid, Bitrate: l.bitrate.Load(), Width: int(l.width.Load()), Height: int(l.height.Load())})
		}
	}
	return ti
}
