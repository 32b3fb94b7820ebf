package client_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/switchboardhq/switchboard/client"
	"github.com/switchboardhq/switchboard/internal/config"
)

// TestCall runs RPCs through a node to a real backend: the answer's data,
// the backend's error code, and a method no backend handles.
func TestCall(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Method string          `json:"method"`
			Data   json.RawMessage `json:"data"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		switch req.Method {
		case "echo":
			_, _ = w.Write([]byte(`{"result":{"data":{"echo":` + string(req.Data) + `}}}`))
		default:
			_, _ = io.WriteString(w, `{"error":{"code":3404,"message":"no such method"}}`)
		}
	}))
	defer func() {
		backend.CloseClientConnections()
		backend.Close()
	}()
	n := startNode(t, func(c *config.Config) { c.ProxyRPCEndpoint = backend.URL })
	c := client.New(n.url(), client.Options{})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Call(ctxT(t), "echo", map[string]int{"n": 1})
	if err != nil || string(got) != `{"echo":{"n":1}}` {
		t.Fatalf("echo: %s, %v", got, err)
	}
	got, err = c.Call(ctxT(t), "echo", json.RawMessage(`[1,2]`))
	if err != nil || string(got) != `{"echo":[1,2]}` {
		t.Fatalf("echo raw: %s, %v", got, err)
	}
	var se *client.Error
	if _, err := c.Call(ctxT(t), "missing", nil); !errors.As(err, &se) || se.Code != 3404 {
		t.Fatalf("missing method: %v", err)
	}
	if _, err := c.Call(ctxT(t), "x", json.RawMessage(`{`)); err == nil {
		t.Fatal("invalid raw data accepted")
	}
}
