package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrCallInterrupted is returned by Call when the connection was lost
// after the rpc command was sent and before its reply came: the backend
// may or may not have run it, so it is not sent again.
var ErrCallInterrupted = errors.New("client: connection lost before the rpc reply")

// Call calls method on the application's backend through the server (the
// rpc command, docs/backend.md) and returns the data the backend
// answered (nil when it answered none). data is encoded as JSON; a
// json.RawMessage is sent as it is, nil sends no data. Call waits for a
// connection within ctx. The backend's refusals come back as *Error with
// its code; 503 means the backend was down or slow (Temporary). A call is
// never sent twice: see ErrCallInterrupted.
func (c *Client) Call(ctx context.Context, method string, data any) (json.RawMessage, error) {
	cmd := command{Command: "rpc", Method: method}
	if data != nil {
		raw, ok := data.(json.RawMessage)
		if ok && !json.Valid(raw) {
			return nil, fmt.Errorf("client: rpc %s: data is not valid JSON", method)
		}
		if !ok {
			var err error
			if raw, err = json.Marshal(data); err != nil {
				return nil, fmt.Errorf("client: rpc %s: encode data: %w", method, err)
			}
		}
		cmd.Data = raw
	}
	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: rpc %s: %w", method, err)
		}
		cmd.ID = c.nextID.Add(1)
		ch, ok := cn.ask(&cmd)
		if !ok {
			continue // not sent: the connection was already gone
		}
		select {
		case a := <-ch:
			switch {
			case errors.Is(a.err, errDisconnected):
				return nil, fmt.Errorf("client: rpc %s: %w", method, ErrCallInterrupted)
			case a.err != nil:
				return nil, fmt.Errorf("client: rpc %s: %w", method, a.err)
			case a.m.Error != nil:
				return nil, fmt.Errorf("client: rpc %s: %w", method, a.m.Error)
			}
			var res struct {
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(a.m.Result, &res); err != nil {
				return nil, fmt.Errorf("client: rpc %s: %w", method, err)
			}
			return res.Data, nil
		case <-ctx.Done():
			cn.forget(cmd.ID)
			return nil, ctx.Err()
		}
	}
}
