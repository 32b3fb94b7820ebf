package sfu

import (
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// downTrack forwards one upTrack to one subscriber. It is the subscriber
// connection's TrackLocal: pion binds it to the negotiated SSRC and
// payload type, and it writes every packet with its own sequence numbers,
// timestamps and VP8 picture ids, continuous across simulcast switches.
type downTrack struct {
	up  *upTrack
	sub *Participant
	id  string

	sender *webrtc.RTPSender // set once, before readRTCP starts

	mu sync.Mutex // guards everything below
	// Binding, set by Bind.
	bound bool
	ssrc  uint32
	pt    uint8
	w     webrtc.TrackLocalWriter
	clock float64 // clock rate, ticks per second

	// Layer choice.
	current     int // layer being forwarded, -1 before the first keyframe
	target      int // layer wanted; a switch happens at its next keyframe
	maxLayer    int
	maxW, maxH  int
	paused      bool
	lastBudget  int           // bit/s, -1 for unknown
	hold        time.Duration // how long a move up must fit first (upHold and up)
	upSince     time.Time     // since when a higher layer fits, zero when none
	upAt        time.Time     // when the last move up for the budget was made
	steadyAt    time.Time     // when the target last changed
	triedAt     time.Time     // when a layer was last tried beyond the budget (probeGrace)
	triedBudget int           // the budget then

	// Rewriting: out = in + offset, reset at each switch.
	started   bool
	seqOff    uint16
	tsOff     uint32
	picOff    uint16
	tl0Off    uint8
	switchSeq uint16 // the first source sequence number of the current span
	lastSrc   uint16 // the newest source sequence number forwarded
	lastSeq   uint16 // the newest sequence number written
	lastTS    uint32
	lastPic   uint16
	lastTL0   uint8
	havePic   bool
	lastAt    time.Time
	packets   uint64
	switches  int
	buf       [1500]byte
	hdr       rtp.Header // reused by write: a header per packet would escape
}

var _ webrtc.TrackLocal = (*downTrack)(nil)

func newDownTrack(t *upTrack, sub *Participant) *downTrack {
	top := 0
	if t.kind == webrtc.RTPCodecTypeVideo {
		top = 2
		for top > 0 && t.layer(top) == nil {
			top--
		}
	}
	return &downTrack{up: t, sub: sub, id: t.id, current: -1, target: top, maxLayer: 2, lastBudget: -1}
}

// Bind implements webrtc.TrackLocal: it picks the negotiated codec that
// matches the published one.
func (d *downTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	want := d.up.codec
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, want.MimeType) {
			continue
		}
		if strings.EqualFold(want.MimeType, webrtc.MimeTypeH264) && packetizationMode(c.SDPFmtpLine) != packetizationMode(want.SDPFmtpLine) {
			continue
		}
		d.mu.Lock()
		d.bound, d.ssrc, d.pt, d.w = true, uint32(ctx.SSRC()), uint8(c.PayloadType), ctx.WriteStream()
		d.clock = float64(c.ClockRate)
		target := d.target
		d.mu.Unlock()
		d.up.requestKeyframe(target)
		return c, nil
	}
	return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
}

func packetizationMode(fmtp string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == "packetization-mode" {
			return v
		}
	}
	return "0"
}

// Unbind implements webrtc.TrackLocal.
func (d *downTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.bound, d.w = false, nil
	d.mu.Unlock()
	return nil
}

// ID implements webrtc.TrackLocal: the SFU track id.
func (d *downTrack) ID() string { return d.id }

// RID implements webrtc.TrackLocal: a subscriber gets one stream.
func (d *downTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal: the publishing participant's id,
// so that a client groups a participant's tracks in one MediaStream.
func (d *downTrack) StreamID() string { return d.up.pub.id }

// Kind implements webrtc.TrackLocal.
func (d *downTrack) Kind() webrtc.RTPCodecType { return d.up.kind }

// switchWindow is how far behind the newest packet the switch point is
// kept: a packet older than that is dropped anyway.
const switchWindow = 1 << 14

// seqBefore reports whether a comes before b in sequence number order.
func seqBefore(a, b uint16) bool { return int16(a-b) < 0 }

// forward writes one received packet to the subscriber, if it belongs to
// the forwarded layer, switching layers at a keyframe of the target. It
// reports whether it wrote the packet.
func (d *downTrack) forward(f *frame) bool {
	switched := -1
	d.mu.Lock()
	if !d.bound || d.paused || !d.sub.subReady.Load() {
		d.mu.Unlock()
		return false
	}
	if f.layer != d.current {
		if f.layer != d.target {
			d.mu.Unlock()
			return false
		}
		if !f.keyframe {
			want := d.target
			d.mu.Unlock()
			d.up.requestKeyframe(want)
			return false
		}
		if d.started {
			switched = f.layer
		}
		d.switchTo(f)
	} else if seqBefore(f.pkt.SequenceNumber, d.switchSeq) {
		d.mu.Unlock() // from before the switch to this layer
		return false
	}
	wrote := d.write(f)
	d.mu.Unlock()
	if switched >= 0 {
		if s := d.up.sfu(); s != nil {
			s.stats.switches.Add(1)
		}
		d.sub.sig.Signal(EventLayer, map[string]any{"track": d.id, "layer": switched})
	}
	return wrote
}

// switchTo makes f's layer the forwarded one, choosing offsets that make
// f follow the last packet written. Lock held.
func (d *downTrack) switchTo(f *frame) {
	src := f.pkt
	if d.started {
		d.seqOff = d.lastSeq + 1 - src.SequenceNumber
		// Readers of different layers stamp their packets: the new one
		// may carry an earlier time than the last packet written.
		ticks := uint32(max(f.at.Sub(d.lastAt), 0).Seconds() * d.clock)
		if ticks == 0 {
			ticks = 1
		}
		d.tsOff = d.lastTS + ticks - src.Timestamp
		if f.hasVP8 && f.vp8.HasPictureID && d.havePic {
			d.picOff = d.lastPic + 1 - f.vp8.PictureID
		}
		if f.hasVP8 && f.vp8.HasTL0PicIdx {
			d.tl0Off = d.lastTL0 + 1 - f.vp8.TL0PicIdx
		}
		d.switches++
	}
	d.switchSeq = src.SequenceNumber
	d.lastSrc = src.SequenceNumber - 1
	d.current = f.layer
}

// write rewrites and sends f, reporting whether it did. Lock held.
func (d *downTrack) write(f *frame) bool {
	src := f.pkt
	newest := !d.started || seqBefore(d.lastSrc, src.SequenceNumber)
	if len(src.Payload) == 0 && src.PaddingSize == 0 && !src.Padding {
		return false
	}
	if len(src.Payload) == 0 { // padding only: not forwarded
		if newest && src.SequenceNumber == d.lastSrc+1 {
			d.seqOff-- // the next packet takes its number
			d.lastSrc = src.SequenceNumber
		}
		return false
	}
	seq := src.SequenceNumber + d.seqOff
	ts := src.Timestamp + d.tsOff
	pl := src.Payload
	if f.hasVP8 && (f.vp8.HasPictureID || f.vp8.HasTL0PicIdx) && len(pl) <= len(d.buf) {
		pic := (f.vp8.PictureID + d.picOff) & f.vp8.PictureIDMask()
		tl0 := f.vp8.TL0PicIdx + d.tl0Off
		pl = f.vp8.Rewrite(d.buf[:], pl, pic, tl0)
		if newest {
			d.lastPic, d.lastTL0, d.havePic = pic, tl0, f.vp8.HasPictureID
		}
	}
	if newest {
		d.lastSrc, d.lastSeq, d.lastTS, d.lastAt = src.SequenceNumber, seq, ts, f.at
		// Keep the switch point within half the sequence space behind,
		// or a long stream would one day look older than its own start.
		if src.SequenceNumber-d.switchSeq > switchWindow {
			d.switchSeq = src.SequenceNumber - switchWindow
		}
	}
	d.started = true
	d.hdr = rtp.Header{Version: 2, Marker: src.Marker, PayloadType: d.pt, SequenceNumber: seq, Timestamp: ts, SSRC: d.ssrc}
	if _, err := d.w.WriteRTP(&d.hdr, pl); err != nil {
		return false
	}
	d.packets++
	return true
}

// readRTCP reads the subscriber's feedback for this track: keyframe
// requests go to the publisher; NACKs are answered by the NACK responder
// interceptor as the reads pass through it.
func (d *downTrack) readRTCP() {
	for {
		pkts, _, err := d.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				d.up.requestKeyframe(d.wantedLayer())
			}
		}
	}
}

// setPrefs applies a subscriber's wishes and re-chooses the layer.
func (d *downTrack) setPrefs(pr Prefs) {
	d.mu.Lock()
	d.maxLayer = 2
	if pr.MaxLayer != nil {
		d.maxLayer = min(max(*pr.MaxLayer, 0), 2)
	}
	d.maxW, d.maxH = pr.MaxWidth, pr.MaxHeight
	resume := d.paused && !pr.Paused
	d.paused = pr.Paused
	if pr.Paused {
		d.current = -1 // resume at a keyframe, numbered on from here
	}
	budget := d.lastBudget
	d.mu.Unlock()
	d.allocate(budget)
	if resume {
		d.up.requestKeyframe(d.wantedLayer())
	}
}

// restart makes forwarding wait for the next keyframe (after a pause in
// the source, such as a mute): the numbering goes on from the last packet
// written, with no hole for the subscriber to ask about.
func (d *downTrack) restart() {
	d.mu.Lock()
	d.current = -1
	d.mu.Unlock()
}

// wantedLayer is the layer forwarded, or the target before the first.
func (d *downTrack) wantedLayer() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current >= 0 {
		return d.current
	}
	return d.target
}

func (d *downTrack) info() SubscriptionInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return SubscriptionInfo{Track: d.id, Layer: d.current, TargetLayer: d.target, Packets: d.packets, Switches: d.switches}
}
