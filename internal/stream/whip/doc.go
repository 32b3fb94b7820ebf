// Package whip is the WebRTC side of live streams: WHIP ingest (the
// WebRTC-HTTP ingestion protocol, RFC 9725) at POST /whip/NAMESPACE/NAME
// and WHEP playback (the WebRTC-HTTP egress protocol) at POST
// /whep/NAMESPACE/NAME, each answering an SDP offer with an SDP answer and
// a session resource that DELETE ends.
//
// The PeerConnections come from the SFU (same codecs, interceptors, ICE
// settings and media port as the calls). A WHIP publisher's RTP is relayed
// packet by packet to its WHEP viewers (pion rewrites SSRC and payload
// type per viewer; NACKs are answered from the send buffer; viewers'
// keyframe requests go to the publisher) and depacketized into the
// registry's access units for the other outputs (LL-HLS). A stream from
// another ingest (RTMP) is packetized for WHEP from its access units:
// H.264 as it is, Opus as it is; AAC is not carried (WebRTC has no AAC,
// and nothing here transcodes), the video still plays.
package whip
