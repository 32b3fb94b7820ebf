package api

import (
	"context"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// webrtcSelfTest runs the calls' self-test (docs/webrtc.md): two peers
// through this node, direct and relay-only, and a report in plain words.
func (a *API) webrtcSelfTest(ctx context.Context, _ []byte) (any, *protocol.Error) {
	if a.opts.SelfTest == nil {
		return nil, protocol.ErrUnavailable.WithMessage("calls are not enabled on this server (webrtc is off)")
	}
	return a.opts.SelfTest(ctx), nil
}
